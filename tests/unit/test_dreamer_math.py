"""DreamerV3's building blocks against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from l2rl.dreamer_math import (
    ReturnNormalizer,
    balanced_kl_loss,
    bins,
    categorical_kl,
    lambda_returns,
    symexp,
    symlog,
    twohot,
    twohot_loss,
    twohot_mean,
    unimix_logits,
)


def test_symlog_and_symexp_invert_each_other() -> None:
    x = torch.tensor([-1000.0, -3.0, -0.5, 0.0, 0.5, 3.0, 1000.0], dtype=torch.float64)
    assert symlog(torch.tensor([math.e - 1.0])).item() == pytest.approx(1.0)
    assert symlog(torch.tensor([-(math.e**2 - 1.0)])).item() == pytest.approx(-2.0)
    torch.testing.assert_close(symexp(symlog(x)), x)


def test_twohot_splits_between_the_two_nearest_bins() -> None:
    centres = torch.tensor([-2.0, 0.0, 2.0, 4.0])
    # 0.5 lies a quarter of the way from 0 to 2: 0.75 on bin 1, 0.25 on bin 2.
    encoded = twohot(torch.tensor([0.5, 2.0, -5.0, 9.0]), centres)
    torch.testing.assert_close(
        encoded,
        torch.tensor(
            [
                [0.0, 0.75, 0.25, 0.0],
                [0.0, 0.0, 1.0, 0.0],
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ]
        ),
    )
    assert torch.allclose(encoded.sum(-1), torch.ones(4))
    # The weighted mean of the bins is the value itself inside the range.
    assert (encoded[0] * centres).sum().item() == pytest.approx(0.5)


def test_default_bins_and_twohot_round_trip_of_a_prediction() -> None:
    centres = bins()
    assert len(centres) == 255 and centres[0] == -20.0 and centres[-1] == 20.0
    target = torch.tensor([3.7, -120.0, 0.0])
    # Logits equal to log of the twohot weights predict the target back exactly.
    logits = torch.log(twohot(symlog(target), centres).clamp(min=1e-30))
    torch.testing.assert_close(twohot_mean(logits, centres), target, rtol=1e-4, atol=1e-4)


def test_twohot_loss_is_cross_entropy_against_the_encoding() -> None:
    centres = torch.tensor([-1.0, 0.0, 1.0])
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    target = symexp(torch.tensor([0.5]))  # 0.5 in symlog space: half on bins 1 and 2
    log_softmax = torch.log_softmax(logits, -1)[0]
    expected = -(0.5 * log_softmax[1] + 0.5 * log_softmax[2])
    assert twohot_loss(logits, target, centres).item() == pytest.approx(expected.item(), rel=1e-6)


def test_unimix_mixes_one_percent_uniform() -> None:
    logits = torch.tensor([[100.0, 0.0, 0.0, 0.0]])  # softmax ~ one-hot
    probs = unimix_logits(logits).exp()
    torch.testing.assert_close(probs, torch.tensor([[0.9925, 0.0025, 0.0025, 0.0025]]))


def test_categorical_kl_sums_over_latents() -> None:
    p = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]))
    q = torch.log(torch.tensor([[[0.25, 0.75], [0.9, 0.1]]]))
    # Latent 0: 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75); latent 1 is identical (0).
    expected = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    assert categorical_kl(p, q).item() == pytest.approx(expected)


def test_balanced_kl_has_free_bits_and_routes_gradients() -> None:
    post = torch.log(torch.tensor([[0.99, 0.01]] * 4)).requires_grad_()  # L=4, K=2
    prior = torch.log(torch.tensor([[0.01, 0.99]] * 4)).requires_grad_()
    loss, info = balanced_kl_loss(post, prior)
    kl = 4 * (0.99 * math.log(99.0) + 0.01 * math.log(1.0 / 99.0))  # > 1 nat: no clipping
    assert info["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert loss.item() == pytest.approx(0.6 * kl, rel=1e-5)
    loss.backward()
    assert post.grad is not None and prior.grad is not None
    # Below the free nats neither term has a gradient.
    close = torch.log(torch.tensor([[0.5, 0.5]])).requires_grad_()
    near = torch.log(torch.tensor([[0.6, 0.4]])).requires_grad_()
    small, _ = balanced_kl_loss(close, near)
    assert small.item() == pytest.approx(0.6)  # 0.5 * 1 + 0.1 * 1
    small.backward()
    assert torch.count_nonzero(close.grad) == 0 and torch.count_nonzero(near.grad) == 0


def test_lambda_returns_by_hand() -> None:
    rewards = torch.tensor([1.0, 0.0, 2.0])
    continues = torch.tensor([1.0, 1.0, 0.0])
    values = torch.tensor([0.0, 10.0, 20.0, 30.0])
    gamma, lam = 0.9, 0.5
    # R_2 = 2 + 0.9 * 0 * (...) = 2
    # R_1 = 0 + 0.9 * (0.5 * 20 + 0.5 * 2) = 9.9
    # R_0 = 1 + 0.9 * (0.5 * 10 + 0.5 * 9.9) = 9.955
    got = lambda_returns(rewards, continues, values, gamma, lam)
    torch.testing.assert_close(got, torch.tensor([9.955, 9.9, 2.0]))
    # lambda = 0: one-step TD targets; lambda = 1: discounted sum bootstrapped at the end.
    td = lambda_returns(rewards, torch.ones(3), values, gamma, 0.0)
    torch.testing.assert_close(td, rewards + gamma * values[1:])
    mc = lambda_returns(rewards, torch.ones(3), values, gamma, 1.0)
    assert mc[0].item() == pytest.approx(1 + 0.9 * 0 + 0.81 * 2 + 0.729 * 30)
    with pytest.raises(ValueError, match="H \\+ 1 values"):
        lambda_returns(rewards, continues, values[:3], gamma, lam)


def test_return_normalizer_is_an_ema_of_the_percentile_range() -> None:
    normalizer = ReturnNormalizer()
    returns = torch.linspace(0.0, 100.0, 101)  # P95 - P5 = 90
    for _ in range(3):
        normalizer.update(returns)
    assert normalizer.range == pytest.approx(90.0 * (1 - 0.99**3))
    assert normalizer.scale() == pytest.approx(90.0 * (1 - 0.99**3))
    copy = ReturnNormalizer()
    copy.load_state_dict(normalizer.state_dict())
    assert copy.range == normalizer.range
    assert ReturnNormalizer().scale() == 1.0
