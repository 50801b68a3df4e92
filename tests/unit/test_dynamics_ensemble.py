"""PETS's probabilistic ensemble: bounded variances, the Gaussian NLL on bootstraps by hand,
and candidates propagated by one member each."""

from __future__ import annotations

import torch

from l2rl.agents.dynamics_ensemble import ProbabilisticEnsemble


def ensemble() -> ProbabilisticEnsemble:
    torch.manual_seed(0)
    return ProbabilisticEnsemble(in_dim=3, out_dim=2, hidden=[8], members=4)


def test_log_variances_stay_between_the_learned_bounds() -> None:
    model = ensemble()
    _, logvar = model(torch.randn(4, 50, 3) * 100)
    # soft bounds: above max by at most log(1 + exp(-(max - min))) ~ 3e-5
    assert (logvar <= model.max_logvar + 1e-4).all() and (logvar >= model.min_logvar).all()
    assert logvar.max() > 0.0 and logvar.min() < -9.0  # both bounds reached


def test_grouped_rows_go_through_member_i_mod_b() -> None:
    model = ensemble()
    x = torch.randn(10, 3)
    every, _ = model(x.unsqueeze(0).expand(4, 10, 3))  # every member on every row
    expected = torch.stack([every[i % 4, i] for i in range(10)])
    torch.testing.assert_close(model.grouped(x), expected)
    torch.testing.assert_close(model.mean_prediction(x), every.mean(0))


def test_the_nll_is_hypercrls_on_each_members_bootstrap() -> None:
    model = ensemble()
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    loss = model.nll(x, y, torch.Generator().manual_seed(5))
    rows = torch.randint(6, (4, 6), generator=torch.Generator().manual_seed(5))
    total = torch.zeros(())
    for member in range(4):
        mean, logvar = model(x[rows[member]].unsqueeze(0).expand(4, 6, 3))
        m, lv = mean[member], logvar[member]
        total = total + (((m - y[rows[member]]) ** 2) * torch.exp(-lv) + lv).sum() / 2
    total = total + 0.01 * (model.max_logvar.sum() - model.min_logvar.sum())
    torch.testing.assert_close(loss, total)
