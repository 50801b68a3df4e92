"""``dreamer_math`` against the official ``dreamerv3`` package (1.5.0, JAX) on the same inputs.

Needs ``.venv-dreamerv3`` (``bash scripts/install-dreamerv3.sh``); the default suite, run with
``.venv``, skips this module. With ``L2RL_REQUIRE_EXTRAS=dreamerv3`` (CI) a missing package
is an error instead of a skip.

Every comparison calls dreamerv3's own code (nothing of it is copied here):

* ``symlog`` / ``symexp``: ``dreamerv3.jaxutils.symlog`` / ``symexp``.
* ``bins``, ``twohot``, ``twohot_loss``, ``twohot_mean``: ``dreamerv3.jaxutils.DiscDist``
  (the reward and critic heads' ``symlog_disc`` distribution, 255 bins on ``[-20, 20]``):
  its ``bins``, ``log_prob`` and ``mean``. ``DiscDist`` builds the twohot target inside
  ``log_prob = <target, log_softmax(logits)>`` and does not return it; the gradient of that
  with respect to the logits is ``target - softmax(logits)``, so the test reads the official
  target off ``jax.grad`` of ``log_prob``.
* ``balanced_kl_loss``: ``dreamerv3.nets.RSSM.dyn_loss`` / ``rep_loss`` with the config's
  ``dyn_loss`` / ``rep_loss`` (``kl``, ``free: 1.0``), scaled by ``loss_scales.dyn`` /
  ``loss_scales.rep`` (0.5 / 0.1) as ``WorldModel.loss`` does; values and gradients.
* ``lambda_returns``: ``dreamerv3.agent.VFunction.score`` with the config's ``horizon`` and
  ``return_lambda``.
* ``ReturnNormalizer``: ``dreamerv3.jaxutils.Moments`` with the config's ``retnorm``
  (``perc_ema``, decay 0.99, ``max: 1.0``, percentiles 5 and 95).

Configs are dreamerv3's own ``configs.yaml`` ``defaults``.

Precision: JAX runs with x64 enabled (for this module only), and symlog/symexp, twohot and
lambda-returns compare in float64. The official KL (``RSSM.get_dist`` casts logits to
float32) and ``Moments`` (casts returns and keeps its state in float32) compute in float32
whatever they are given, so those compare our float64 against float32. All comparisons use
``rtol = atol = 1e-6``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

if "dreamerv3" in os.environ.get("L2RL_REQUIRE_EXTRAS", "").split(","):
    # Required (CI): an ImportError here fails the run instead of skipping it.
    import dreamerv3
    import jax
else:
    dreamerv3 = pytest.importorskip("dreamerv3")
    jax = pytest.importorskip("jax")

import embodied  # dreamerv3 1.5.0 puts its bundled `embodied` on sys.path when imported
import jax.numpy as jnp
from dreamerv3 import agent, jaxutils, nets
from dreamerv3 import ninjax as nj

from l2rl import dreamer_math as dm

RTOL = ATOL = 1e-6
CONFIG = embodied.Config(dreamerv3.configs["defaults"])


@pytest.fixture(autouse=True, scope="module")
def _jax_x64() -> Iterator[None]:
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def _close(ours: torch.Tensor | float, official: Any) -> None:
    expected = torch.as_tensor(np.array(official, dtype=np.float64))
    torch.testing.assert_close(
        torch.as_tensor(ours, dtype=torch.float64), expected, rtol=RTOL, atol=ATOL
    )


def _pure(fn: Any, *args: Any) -> Any:
    """Run an impure ninjax function (modules, variables) with fresh state; its output."""
    out, _ = nj.pure(fn)({}, jax.random.PRNGKey(0), *args)
    return out


def _centres64() -> torch.Tensor:
    # dm.bins() is float32 (torch's default dtype); the float64 comparisons use the same
    # linspace in float64. test_bins checks dm.bins() itself.
    return torch.linspace(-dm.BIN_RANGE, dm.BIN_RANGE, dm.BINS, dtype=torch.float64)


def _disc(logits: np.ndarray, **kwargs: Any) -> Any:
    # The heads' `symlog_disc` distribution: nets.Dist builds it as DiscDist(logits,
    # dims=len(shape), low=-20, high=20) with shape () for reward and critic.
    return jaxutils.DiscDist(jnp.asarray(logits), dims=0, low=-20, high=20, **kwargs)


def test_config_is_what_dreamer_math_assumes() -> None:
    assert CONFIG.critic.bins == CONFIG.reward_head.bins == dm.BINS
    assert CONFIG.rssm.unimix == CONFIG.actor.unimix == dm.UNIMIX
    assert CONFIG.loss_scales.dyn == 0.5 and CONFIG.loss_scales.rep == 0.1
    assert CONFIG.dyn_loss.free == CONFIG.rep_loss.free == 1.0


def test_symlog_and_symexp() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.normal(size=500) * 10.0,
            np.sign(rng.normal(size=200)) * 10.0 ** rng.uniform(-8, 8, size=200),
            [0.0, -0.0, 1e-12, -1e-12, 1e6, -1e6],
        ]
    )
    _close(dm.symlog(torch.from_numpy(x)), jaxutils.symlog(jnp.asarray(x)))
    y = rng.uniform(-20.0, 20.0, size=500)
    _close(dm.symexp(torch.from_numpy(y)), jaxutils.symexp(jnp.asarray(y)))


def test_bins() -> None:
    official = _disc(np.zeros(dm.BINS)).bins
    # float32 vs float64: within float32 rounding (half an ulp at 20 is 9.5e-7).
    _close(dm.bins(), official)
    _close(_centres64(), official)


def test_twohot_encoding() -> None:
    rng = np.random.default_rng(1)
    centres = _centres64()
    # Symlog-space values: inside the range, beyond both ends, on bin centres and the ends.
    x = np.concatenate(
        [
            rng.uniform(-25.0, 25.0, size=300),
            centres.numpy()[rng.integers(0, dm.BINS, size=20)],
            [-20.0, 20.0, 0.0, -1e3, 1e3],
        ]
    ).reshape(13, 25)
    logits = rng.normal(size=(*x.shape, dm.BINS))

    def official_log_prob(lg: Any) -> Any:
        # Identity transform: dm.twohot takes values already in symlog space.
        return _disc(lg, transfwd=lambda v: v).log_prob(jnp.asarray(x)).sum()

    official_target = jax.grad(official_log_prob)(jnp.asarray(logits)) + jax.nn.softmax(
        jnp.asarray(logits)
    )
    ours = dm.twohot(torch.from_numpy(x), centres)
    _close(ours, official_target)
    _close(ours.sum(-1), np.ones(x.shape))


def test_twohot_loss_and_mean() -> None:
    rng = np.random.default_rng(2)
    centres = _centres64()
    target = np.concatenate(
        [
            rng.normal(size=200) * 3.0,
            np.sign(rng.normal(size=200)) * 10.0 ** rng.uniform(-3, 9, 200),
        ]
    ).reshape(16, 25)
    logits = rng.normal(size=(*target.shape, dm.BINS)) * 3.0
    dist = _disc(logits)  # transfwd=symlog, transbwd=symexp: the heads' defaults
    # log_prob is the negative of our cross-entropy.
    _close(
        dm.twohot_loss(torch.from_numpy(logits), torch.from_numpy(target), centres),
        -dist.log_prob(jnp.asarray(target)),
    )
    # Logits peaked on single bins too, so the means span the whole symexp range.
    peaked = logits + 30.0 * np.eye(dm.BINS)[rng.integers(0, dm.BINS, size=target.shape)]
    for lg in (logits, peaked):
        _close(dm.twohot_mean(torch.from_numpy(lg), centres), _disc(lg).mean())


def _latent_logits(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior and prior logits ``[B, 32, 32]`` whose KLs (summed over latents) run from
    well below the 1-nat free bits to well above it."""
    rng = np.random.default_rng(seed)
    batch, latents, classes = 24, CONFIG.rssm.stoch, CONFIG.rssm.classes
    post = rng.normal(size=(batch, latents, classes))
    spread = np.geomspace(0.01, 1.5, batch)[:, None, None]
    prior = post + spread * rng.normal(size=(batch, latents, classes))
    return post, prior


def _official_kl_terms(post_logp: Any, prior_logp: Any) -> tuple[Any, Any]:
    """``RSSM.dyn_loss`` and ``rep_loss`` of ``[..., 32, 32]`` log-probabilities (the RSSM's
    ``logit`` entries); traceable, so ``jax.grad`` goes through it."""
    rssm = nets.RSSM(**CONFIG.rssm, name="rssm")

    def terms(post: Any, prior: Any) -> tuple[Any, Any]:
        post, prior = {"logit": post}, {"logit": prior}
        return (
            rssm.dyn_loss(post, prior, **CONFIG.dyn_loss),
            rssm.rep_loss(post, prior, **CONFIG.rep_loss),
        )

    return _pure(terms, jnp.asarray(post_logp), jnp.asarray(prior_logp))  # type: ignore[no-any-return]


def test_balanced_kl_loss_values() -> None:
    post_raw, prior_raw = _latent_logits(3)
    # Both sides get the same (unimixed) log-probabilities, as the RSSM's `logit`s are.
    post = dm.unimix_logits(torch.from_numpy(post_raw))
    prior = dm.unimix_logits(torch.from_numpy(prior_raw))
    dyn, rep = _official_kl_terms(post.numpy(), prior.numpy())
    loss, info = dm.balanced_kl_loss(post, prior)
    scales = CONFIG.loss_scales
    _close(
        loss, scales.dyn * np.asarray(dyn, np.float64) + scales.rep * np.asarray(rep, np.float64)
    )
    # Forward, dyn and rep are the same KL[q || p]; free bits clip it at 1 nat.
    kl = info["kl"]
    assert (kl < 1.0).any() and (kl > 1.0).any()
    _close(kl.clamp(min=1.0), dyn)
    _close(kl.clamp(min=1.0), rep)


def test_balanced_kl_loss_gradients() -> None:
    """The stop-gradients: dyn trains only the prior, rep only the posterior, and neither
    below the free bits. Gradients with respect to raw logits (log_softmax on both sides;
    jax.nn.log_softmax is JAX's, not dreamerv3 code)."""
    post_raw, prior_raw = _latent_logits(4)
    scales = CONFIG.loss_scales

    def official_total(post: Any, prior: Any) -> Any:
        dyn, rep = _official_kl_terms(post, prior)
        return (scales.dyn * dyn + scales.rep * rep).sum()

    grads = jax.grad(official_total, argnums=(0, 1))(jnp.asarray(post_raw), jnp.asarray(prior_raw))
    post = torch.from_numpy(post_raw).requires_grad_(True)
    prior = torch.from_numpy(prior_raw).requires_grad_(True)
    loss, info = dm.balanced_kl_loss(torch.log_softmax(post, -1), torch.log_softmax(prior, -1))
    loss.sum().backward()
    assert post.grad is not None and prior.grad is not None
    assert (info["kl"] < 1.0).any() and (info["kl"] > 1.0).any()
    _close(post.grad, grads[0])
    _close(prior.grad, grads[1])


@pytest.mark.parametrize("horizon,lam", [(CONFIG.horizon, CONFIG.return_lambda), (20, 0.5)])
def test_lambda_returns(horizon: int, lam: float) -> None:
    rng = np.random.default_rng(5)
    steps, batch = CONFIG.imag_horizon, 16
    rewards = rng.normal(size=(steps, batch))
    values = rng.normal(size=(steps + 1, batch)) * 5.0
    cont = (rng.uniform(size=(steps + 1, batch)) > 0.15).astype(np.float64)
    cont[:, :2] = rng.uniform(size=(steps + 1, 2))  # soft continues too
    config = CONFIG.update(horizon=horizon, return_lambda=lam)

    # VFunction.score's convention: the trajectory has H + 1 states; `rewfn` gives the reward
    # of reaching states 1..H (the reward head's mean()[1:]), `traj["cont"][t]` is the
    # continue flag of state t (cont[0] is the start's and unused), `net(traj).mean()` the
    # values of states 0..H, and discount = 1 - 1 / horizon. Ours: rewards[t] = r_t of step
    # t -> t + 1, continues[t] = c_t "the episode goes on after step t" = the flag of state
    # t + 1, values v_0..v_H, gamma. So continues = cont[1:] and gamma = 1 - 1 / horizon; the
    # value head is stood in for by one returning `values` (score takes values from it).
    critic = agent.VFunction(lambda traj: jnp.asarray(rewards), config, name="critic")
    critic.net = lambda traj: SimpleNamespace(mean=lambda: jnp.asarray(values))
    traj = {"cont": jnp.asarray(cont), "action": jnp.zeros((steps + 1, batch, 1))}
    _, ret, base = _pure(critic.score, traj)
    ours = dm.lambda_returns(
        torch.from_numpy(rewards),
        torch.from_numpy(cont[1:]),
        torch.from_numpy(values),
        gamma=1.0 - 1.0 / config.horizon,
        lam=config.return_lambda,
    )
    assert ret.dtype == jnp.float64 and ret.shape == (steps, batch)
    _close(ours, ret)
    _close(torch.from_numpy(values[:-1]), base)


def test_return_normalizer() -> None:
    rng = np.random.default_rng(6)
    moments = jaxutils.Moments(**CONFIG.retnorm, name="retnorm")
    ours = dm.ReturnNormalizer()
    update = nj.pure(moments.__call__)
    state: dict[str, Any] = {}
    # Small returns first (the scale stays at its floor of 1), then growing ones.
    magnitudes = np.concatenate([np.full(10, 0.5), np.geomspace(1.0, 300.0, 30)])
    for step, magnitude in enumerate(magnitudes):
        # The returns of one imagination batch [H, B]; float32 because Moments casts to it.
        returns = (rng.normal(size=(CONFIG.imag_horizon, 64)) * magnitude + 3.0).astype(np.float32)
        (offset, invscale), state = update(state, jax.random.PRNGKey(step), jnp.asarray(returns))
        ours.update(torch.from_numpy(returns))
        # Moments keeps EMAs of P5 and P95 (both from 0, no debiasing in `perc_ema`); ours
        # an EMA of their difference, the same by linearity. Its `offset` (the EMA of P5)
        # has no counterpart: it cancels in the advantage (ret - offset) / s - (v - offset) / s.
        low, high = state["retnorm/low/value"], state["retnorm/high/value"]
        _close(ours.range, np.float64(high) - np.float64(low))
        _close(ours.scale(), invscale)
        _close(np.float64(offset), low)
    assert ours.scale() > 1.0
