"""Wing + MSE loss against a direct evaluation of the formula."""

from __future__ import annotations

import math

import pytest
import torch

from densemark.train.loss import WingMSELoss, wing, wing_mse_loss


def _wing_ref(x: float, w: float, eps: float) -> float:
    if abs(x) < w:
        return w * math.log(1 + abs(x) / eps)
    return abs(x) - (w - w * math.log(1 + w / eps))


@pytest.mark.parametrize("w,eps", [(15.0, 3.0), (10.0, 2.0)])
def test_wing_both_branches(w, eps):
    xs = [0.0, 0.5, -2.0, 7.3, -14.99, 15.0, -15.01, 40.0, -123.4]
    got = wing(torch.tensor(xs, dtype=torch.float64), w, eps)
    ref = [_wing_ref(x, w, eps) for x in xs]
    assert torch.allclose(got, torch.tensor(ref, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert any(abs(x) < w for x in xs) and any(abs(x) >= w for x in xs)


def test_wing_is_continuous_at_w():
    w, eps, d = 15.0, 3.0, 1e-9
    x = torch.tensor([w - d, w + d, -(w - d), -(w + d)], dtype=torch.float64)
    v = wing(x, w, eps)
    assert abs(v[0] - v[1]) < 1e-6 and abs(v[2] - v[3]) < 1e-6


def test_wing_mse_matches_loop_and_module():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 12, generator=g, dtype=torch.float64)
    target = torch.rand(3, 12, generator=g, dtype=torch.float64)
    scale, w1, w2 = 256.0, 1.5, 0.5
    errs = [
        (p - t) * scale
        for p, t in zip(pred.flatten().tolist(), target.flatten().tolist(), strict=True)
    ]
    ref = w1 * sum(_wing_ref(e, 15, 3) for e in errs) / len(errs) + w2 * sum(
        e * e for e in errs
    ) / len(errs)
    got = wing_mse_loss(pred, target)
    assert abs(got.item() - ref) < 1e-6 * ref
    assert torch.equal(WingMSELoss()(pred, target), got)
    # the scale decides which branch an error takes: 10 px of a 256 crop is on the log branch
    assert wing_mse_loss(torch.tensor([10 / 256]), torch.zeros(1), w2=0.0).item() == pytest.approx(
        1.5 * _wing_ref(10.0, 15, 3)
    )


def test_loss_gradient_is_finite_at_zero_error():
    pred = torch.zeros(4, requires_grad=True)
    wing_mse_loss(pred, torch.zeros(4)).backward()
    assert torch.isfinite(pred.grad).all()
