"""Landmark regressors: backbones through a small registry, each with a 3 x K regression head.

Plain PyTorch (no torchvision/timm). Every model takes ``(N, 3, H, W)`` float32 RGB in
``[0, 1]`` (normalised inside the graph with the ImageNet mean/std, so the ONNX export needs no
pre-processing beyond ``/ 255``) and returns ``(N, 3 * K)`` float32: the K landmarks' (x, y, z)
in units of the input side (``pixels / input_size``), row-major K x 3.

>>> m = create_model("mobilenetv2", n_points=520, input_size=256)
>>> m(torch.zeros(1, 3, 256, 256)).shape
torch.Size([1, 1560])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from densemark.core.errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``fn(width: float) -> nn.Module`` (with an ``out_features`` attribute)."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


class LandmarkRegressor(nn.Module):
    """Backbone -> global average pool -> (dropout) -> Linear(features, 3 * K)."""

    def __init__(self, backbone: nn.Module, n_points: int, input_size: int, dropout: float = 0.0):
        super().__init__()
        self.n_points = int(n_points)
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(backbone.out_features, 3 * self.n_points)
        nn.init.normal_(self.head.weight, std=1e-3)
        with torch.no_grad():  # start at the crop centre: x, y = 0.5, z = 0.25 of the side
            self.head.bias.view(self.n_points, 3).copy_(torch.tensor([0.5, 0.5, 0.25]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) float32 RGB in [0, 1] -> (N, 3 * K) float32."""
        x = (x - self.mean) / self.std
        f = self.pool(self.backbone(x)).flatten(1)
        return self.head(self.dropout(f))


def create_model(
    name: str, n_points: int, input_size: int, width: float = 1.0, dropout: float = 0.0
) -> LandmarkRegressor:
    """Build backbone ``name`` (see :func:`list_backbones`) with a 3 x ``n_points`` head."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    if n_points < 1 or input_size < 32 or width <= 0:
        raise ConfigError(
            f"bad model size: n_points={n_points}, input_size={input_size}, width={width}"
        )
    return LandmarkRegressor(_REGISTRY[name](width=width), n_points, input_size, dropout)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- MobileNetV2


def _divisible(v: float, divisor: int = 8) -> int:
    """Round channels as MobileNetV2's reference code does (never below 90 % of ``v``)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn(
    cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = int(round(cin * expand))
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, cout, 1, act=False),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 features (Sandler et al. 2018), width multiplier ``width``; 1280-d output."""

    # expansion t, channels c, repeats n, first stride s
    CFG = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, width: float = 1.0):
        super().__init__()
        cin = _divisible(32 * width)
        self.out_features = _divisible(1280 * max(1.0, width))
        layers: list[nn.Module] = [_conv_bn(3, cin, 3, 2)]
        for t, c, n, s in self.CFG:
            cout = _divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(_conv_bn(cin, self.out_features, 1))
        self.features = nn.Sequential(*layers)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_backbone("mobilenetv2")
def mobilenetv2(width: float = 1.0) -> nn.Module:
    return MobileNetV2(width)


# --------------------------------------------------------------------------- ResNet-18


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + self.down(x))


class ResNet18(nn.Module):
    """ResNet-18 features (He et al. 2016), channels x ``width``; 512 * width-d output."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        chans = [max(8, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(3, chans[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        layers: list[nn.Module] = []
        cin = chans[0]
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            layers += [BasicBlock(cin, c, stride), BasicBlock(c, c, 1)]
            cin = c
        self.layers = nn.Sequential(*layers)
        self.out_features = cin
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))


@register_backbone("resnet18")
def resnet18(width: float = 1.0) -> nn.Module:
    return ResNet18(width)


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block (0: left as it is), then restored.

    A forward pass's reductions depend on the count, so predictions are the same bytes only for
    the same ``n``; timings likewise compare only at the same ``n``.
    """
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
