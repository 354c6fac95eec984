"""Training loss ``w1 * Wing + w2 * MSE`` (Feng et al. 2018 Wing loss; Basak et al. 2023 weights).

**Scale.** Both terms act on per-coordinate errors measured in **pixels of a 256 x 256 crop**
(the paper's input, and the pixel scale Wing's ``w`` and ``epsilon`` were chosen for). The model
predicts coordinates in units of the input side; the training step multiplies the prediction
error by ``loss_scale = 256`` before the loss, whatever the input size, so ``w = 15`` means
"errors below ~15 px of a 256 crop get the log branch" at every input size.

Wing(x) = ``w * ln(1 + |x| / eps)`` if ``|x| < w``, else ``|x| - C`` with
``C = w - w * ln(1 + w / eps)`` (continuous at ``|x| = w``). Both terms are means over all
coordinates (x, y and z of every landmark of every sample).
"""

from __future__ import annotations

import torch
from torch import nn

from densemark.core import detmath


def wing(err: torch.Tensor, w: float = 15.0, epsilon: float = 3.0) -> torch.Tensor:
    """Element-wise Wing loss of errors ``err`` (any shape, pixel scale); same shape out."""
    a = err.abs()
    c = w - w * float(detmath.log1p(w / epsilon))
    return torch.where(a < w, w * torch.log1p(a / epsilon), a - c)


def wing_mse_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    w1: float = 1.5,
    w2: float = 0.5,
    w: float = 15.0,
    epsilon: float = 3.0,
    scale: float = 256.0,
) -> torch.Tensor:
    """``w1 * mean(Wing(e)) + w2 * mean(e ** 2)`` with ``e = (pred - target) * scale``.

    pred, target: (N, ...) in units of the input side; ``scale`` turns them into pixels of
    a ``scale``-sided crop (see the module docstring). Returns a scalar tensor.
    """
    e = (pred.float() - target.float()) * scale
    return w1 * wing(e, w, epsilon).mean() + w2 * e.square().mean()


class WingMSELoss(nn.Module):
    """:func:`wing_mse_loss` as a module: ``WingMSELoss()(pred, target)``."""

    def __init__(
        self,
        w1: float = 1.5,
        w2: float = 0.5,
        w: float = 15.0,
        epsilon: float = 3.0,
        scale: float = 256.0,
    ):
        super().__init__()
        self.w1, self.w2, self.w, self.epsilon, self.scale = w1, w2, w, epsilon, scale

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return wing_mse_loss(pred, target, self.w1, self.w2, self.w, self.epsilon, self.scale)

    def extra_repr(self) -> str:
        return f"w1={self.w1}, w2={self.w2}, w={self.w}, epsilon={self.epsilon}, scale={self.scale}"
