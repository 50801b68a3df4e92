"""DreamerV3's convolutional encoder and decoder for image observations (Hafner et al. 2023).

The encoder is a stack of stride-2 convolutions (kernel 4) whose channel count starts at
``depth`` and doubles at every stage, each followed by a LayerNorm over channels and SiLU,
until the image is at most ``min_resolution`` on each side (DreamerV3 stops at 4x4); the
last feature map is flattened into the embedding. The decoder mirrors it: a linear
projection of the model features onto the smallest feature map, then stride-2 transposed
convolutions that halve the channels back to ``depth`` (LayerNorm and SiLU after each)
and a last one to the image's channels, with no norm or activation.

**Any height and width.** A stride-2 convolution halves a side exactly only when it is
even, so the input is zero-padded (evenly on both sides, the odd pixel at the bottom or
right) to the next multiple of ``2 ** stages`` on each side, and the decoder's output is
cropped back by the same amounts. The number of stages is the fewest halvings that bring
the longer side to ``min_resolution`` or below. For MinAtar's 10x10 with
``min_resolution=4``: 2 stages, padded to 12x12, feature maps 6x6 then 3x3; for 64x64: 4
stages, no padding, 32, 16, 8, 4 (DreamerV3's own layout).

Both networks read and write channels-last images ``[..., H, W, C]`` with any leading
dimensions (``[N]`` when acting, ``[B, T]`` in training), as the environment gives them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KERNEL = 4
"""Kernel size of every (transposed) convolution; with stride 2 and padding 1 it halves
(doubles) an even side exactly."""


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``[N, C, H, W]`` feature map, at every pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each pixel's channel vector."""
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def conv_stages(height: int, width: int, min_resolution: int) -> int:
    """The fewest stride-2 halvings that bring ``max(height, width)`` to ``min_resolution``
    or below (0 when the image is already that small)."""
    side, stages = max(height, width), 0
    while side > min_resolution:
        side, stages = math.ceil(side / 2), stages + 1
    return stages


class ConvGeometry:
    """Stages, padding and feature-map sizes of an ``H x W`` image (see the module docstring).

    Args:
        height: image height ``H``.
        width: image width ``W``.
        min_resolution: the largest side of the smallest feature map.
    """

    def __init__(self, height: int, width: int, min_resolution: int) -> None:
        if height <= 0 or width <= 0 or min_resolution <= 0:
            raise ValueError(
                f"image sides and min_resolution must be positive, got {height}x{width}, "
                f"{min_resolution}"
            )
        self.height, self.width = height, width
        self.stages = conv_stages(height, width, min_resolution)
        multiple = 2**self.stages
        padded_h = math.ceil(height / multiple) * multiple
        padded_w = math.ceil(width / multiple) * multiple
        self.min_height, self.min_width = padded_h // multiple, padded_w // multiple
        # F.pad order for the last two dims of [N, C, H, W]: (left, right, top, bottom).
        pad_h, pad_w = padded_h - height, padded_w - width
        self.padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)


class ConvEncoder(nn.Module):
    """Images ``[..., H, W, C]`` (float, already scaled) to embeddings ``[..., embed_dim]``.

    Args:
        shape: the image shape ``(H, W, C)``.
        depth: channels of the first stage (DreamerV3's ``cnn_depth``); stage ``i`` has
            ``depth * 2 ** i``.
        min_resolution: stop halving once both sides are at most this.

    >>> encoder = ConvEncoder((10, 10, 4), depth=8, min_resolution=4)
    >>> encoder(torch.zeros(2, 3, 10, 10, 4)).shape  # 2 stages: 64 channels of 3x3
    torch.Size([2, 3, 144])
    """

    def __init__(self, shape: tuple[int, int, int], depth: int, min_resolution: int) -> None:
        super().__init__()
        height, width, channels = shape
        self.shape = shape
        self.geometry = geometry = ConvGeometry(height, width, min_resolution)
        layers: list[nn.Module] = []
        in_channels = channels
        for stage in range(geometry.stages):
            out_channels = depth * 2**stage
            # No bias: the LayerNorm that follows has its own.
            layers += [
                nn.Conv2d(in_channels, out_channels, KERNEL, stride=2, padding=1, bias=False),
                ChannelNorm(out_channels),
                nn.SiLU(),
            ]
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.embed_dim = in_channels * geometry.min_height * geometry.min_width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embed every image; the leading dimensions are kept."""
        lead = images.shape[:-3]
        x = images.reshape(-1, *self.shape).permute(0, 3, 1, 2)
        x = self.convs(F.pad(x, self.geometry.padding))
        embed: torch.Tensor = x.reshape(*lead, self.embed_dim)
        return embed


class ConvDecoder(nn.Module):
    """Features ``[..., feature_dim]`` to images ``[..., H, W, C]`` (in the target's scale).

    Args:
        feature_dim: size of the model features it decodes.
        shape: the image shape ``(H, W, C)``.
        depth: as for :class:`ConvEncoder`; the decoder mirrors that encoder's stages.
        min_resolution: as for :class:`ConvEncoder`.

    >>> decoder = ConvDecoder(32, (10, 10, 4), depth=8, min_resolution=4)
    >>> decoder(torch.zeros(2, 3, 32)).shape
    torch.Size([2, 3, 10, 10, 4])
    """

    def __init__(
        self, feature_dim: int, shape: tuple[int, int, int], depth: int, min_resolution: int
    ) -> None:
        super().__init__()
        height, width, channels = shape
        self.shape = shape
        self.geometry = geometry = ConvGeometry(height, width, min_resolution)
        stages = geometry.stages
        self.top_channels = depth * 2 ** (stages - 1) if stages > 0 else channels
        self.project = nn.Linear(
            feature_dim, self.top_channels * geometry.min_height * geometry.min_width
        )
        layers: list[nn.Module] = []
        in_channels = self.top_channels
        for stage in reversed(range(stages)):
            last = stage == 0
            out_channels = channels if last else depth * 2 ** (stage - 1)
            layers.append(
                nn.ConvTranspose2d(
                    in_channels, out_channels, KERNEL, stride=2, padding=1, bias=last
                )
            )
            if not last:
                layers += [ChannelNorm(out_channels), nn.SiLU()]
            in_channels = out_channels
        self.deconvs = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Decode every feature vector into an image; the leading dimensions are kept."""
        lead = features.shape[:-1]
        geometry = self.geometry
        x = self.project(features.reshape(-1, features.shape[-1]))
        x = self.deconvs(x.view(-1, self.top_channels, geometry.min_height, geometry.min_width))
        left, _, top, _ = geometry.padding
        x = x[:, :, top : top + geometry.height, left : left + geometry.width]
        image: torch.Tensor = x.permute(0, 2, 3, 1).reshape(*lead, *self.shape)
        return image
