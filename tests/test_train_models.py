"""Backbone registry, parameter counts and the MAC counter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from densemark.core.errors import ConfigError
from densemark.train.macs import count_macs
from densemark.train.models import count_params, create_model, list_backbones, register_backbone
from tests._torch import one_thread  # noqa: F401 - autouse fixture


def test_registry_lists_both_backbones_and_rejects_unknown():
    assert {"mobilenetv2", "resnet18"} <= set(list_backbones())
    with pytest.raises(ConfigError, match="unknown backbone 'nope'"):
        create_model("nope", 10, 64)
    with pytest.raises(ValueError, match="twice"):
        register_backbone("mobilenetv2")(lambda width=1.0: nn.Identity())


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet18"])
def test_output_shape_is_3k(name):
    m = create_model(name, n_points=520, input_size=64, width=0.25).eval()
    assert m(torch.rand(2, 3, 64, 64)).shape == (2, 1560)
    assert m.head.out_features == 1560


def test_mobilenetv2_width1_counts():
    m = create_model("mobilenetv2", n_points=520, input_size=256)
    # MobileNetV2 features: the reference ImageNet model's 3,504,872 less its 1280 -> 1000 classifier
    assert count_params(m.backbone) == 3_504_872 - (1280 * 1000 + 1000)
    assert count_params(m) == count_params(m.backbone) + 1280 * 1560 + 1560
    # the reference model's 300.8M MACs at 224 (ImageNet head) scale with the spatial area
    feat_macs = count_macs(m, 224) - 1280 * 1560
    assert abs(feat_macs - (300_774_272 - 1_280_000)) < 1e5
    assert count_macs(m, 256) < 0.4e9


def _tiny_net():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=1, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),
        nn.Conv2d(4, 6, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    )


def test_mac_counter_matches_hand_count():
    h = w = 8
    conv1 = (4 * h * w) * 3 * 3 * 3  # every output element: in_ch * kh * kw MACs
    dw = (4 * (h // 2) * (w // 2)) * 1 * 3 * 3  # depthwise: in_ch / groups = 1
    pw = (6 * (h // 2) * (w // 2)) * 4
    fc = 5 * 6
    assert count_macs(_tiny_net(), (h, w)) == conv1 + dw + pw + fc


def test_mac_counter_leaves_training_mode_and_hooks():
    net = _tiny_net().train()
    count_macs(net, 8)
    assert net.training
    assert all(not m._forward_hooks for m in net.modules())
