"""Multiply-accumulate count of a forward pass (Conv2d and Linear layers, via forward hooks).

Counts what the papers count (one MAC per weight use; batch-norm, activations, pooling and
the bias additions are not counted).
"""

from __future__ import annotations

import torch
from torch import nn


def count_macs(model: nn.Module, input_size: int | tuple[int, int], channels: int = 3) -> int:
    """MACs of one forward pass of ``model`` at batch 1 on a (1, channels, H, W) input.

    Conv2d: ``out_elements * (in_channels / groups) * kh * kw``;
    Linear: ``out_elements * in_features``.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    total = 0

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += out.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters(), None)
        x = torch.zeros(1, channels, h, w, device=p.device if p is not None else "cpu")
        with torch.no_grad():
            model(x)
    finally:
        for hd in handles:
            hd.remove()
        model.train(was_training)
    return int(total)
