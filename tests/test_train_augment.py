"""Augmentation moves image and 3D labels by the same geometry; seeded loader."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from densemark.core.seeding import rng_for
from densemark.train.augment import AugmentDraw, apply_augment, draw_augment, similarity
from densemark.train.data import LandmarkSamples, make_loader
from densemark.train.params import AugmentParams
from tests.factories import SyntheticLandmarks

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _scene_transform(points: np.ndarray, d: AugmentDraw, res: int, size: int) -> np.ndarray:
    """Reference: the 3D scene rotated about the viewing axis through the crop centre, scaled
    by r * s (resize times augment scale) and shifted, written as one 4 x 4 matrix."""
    r = (size - 1) / (res - 1)
    k = r * d.scale
    th = np.deg2rad(d.angle_deg)
    rz = np.eye(4)
    rz[:2, :2] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    to_origin = np.eye(4)
    to_origin[:2, 3] = -(res - 1) / 2
    scale = np.diag([k, k, k, 1.0])
    back = np.eye(4)
    back[:2, 3] = (size - 1) / 2 + np.asarray(d.shift) * size
    m = back @ scale @ rz @ to_origin
    h = np.column_stack([points, np.ones(len(points))])
    return (h @ m.T)[:, :3]


@pytest.mark.parametrize("angle", [0.0, 45.0, -30.0, 90.0])
def test_labels_follow_3d_scene_transform(angle):
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.uniform(20, 230, (50, 2)), rng.uniform(0, 120, 50)]).astype(
        np.float32
    )
    d = AugmentDraw(angle_deg=angle, scale=0.87, shift=(0.03, -0.04))
    _, got = apply_augment(np.zeros((256, 256, 3), np.uint8), pts, d, 128)
    ref = _scene_transform(pts.astype(np.float64), d, 256, 128)
    np.testing.assert_allclose(got, ref, atol=1e-3)
    # depth changes by the scale factor only, never by 1 / cos(angle)
    np.testing.assert_allclose(got[:, 2], pts[:, 2] * 0.87 * 127 / 255, rtol=1e-5)


def _blob_image(points: np.ndarray, res: int, sigma: float = 1.5) -> np.ndarray:
    yy, xx = np.mgrid[0:res, 0:res].astype(np.float64)
    img = np.zeros((res, res))
    for x, y in points[:, :2]:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return np.repeat((np.clip(img, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def _blob_centres(img: np.ndarray) -> np.ndarray:
    g = img[..., 0].astype(np.float64)
    n, lab = cv2.connectedComponents((g > 20).astype(np.uint8))
    yy, xx = np.mgrid[0 : g.shape[0], 0 : g.shape[1]]
    out = []
    for i in range(1, n):
        w = g * (lab == i)
        out.append([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
    return np.asarray(out)


def test_warped_dots_land_on_the_new_labels():
    rng = np.random.default_rng(2)
    pts = np.column_stack([rng.uniform(60, 190, (8, 2)), rng.uniform(0, 50, 8)])
    pts = pts[np.argsort(pts[:, 0])]
    # keep the dots apart so each is its own blob
    keep = [0]
    for i in range(1, len(pts)):
        if np.min(np.linalg.norm(pts[keep, :2] - pts[i, :2], axis=1)) > 25:
            keep.append(i)
    pts = pts[keep].astype(np.float32)
    d = AugmentDraw(angle_deg=33.0, scale=1.1, shift=(-0.05, 0.02))
    img, lab = apply_augment(_blob_image(pts, 256), pts, d, 192)
    found = _blob_centres(img)
    assert len(found) == len(pts)
    dist = np.linalg.norm(found[:, None] - lab[None, :, :2], axis=2)
    assert np.max(dist.min(axis=0)) < 0.35  # every new label sits on a warped dot


def test_draws_are_seeded_per_sample_and_within_bounds():
    p = AugmentParams(blur_prob=0.5, occlusion_prob=0.5)
    a = draw_augment(rng_for(0, "augment", 3, 7), p)
    assert a == draw_augment(rng_for(0, "augment", 3, 7), p)
    draws = [draw_augment(rng_for(0, "augment", 3, i), p) for i in range(200)]
    assert len({d.angle_deg for d in draws}) == 200
    assert all(abs(d.angle_deg) <= p.rotation_deg and abs(d.scale - 1) <= p.scale for d in draws)
    assert 40 < sum(d.blur_sigma > 0 for d in draws) < 160
    assert 40 < sum(d.occlusion is not None for d in draws) < 160
    assert draw_augment(rng_for(0, 1), AugmentParams(enabled=False)) == AugmentDraw()


def test_photometric_changes_leave_labels():
    ds = SyntheticLandmarks(n=1, n_points=20, res=128)
    item = ds[0]
    d = AugmentDraw(
        gains=(1.3, 0.7, 1.0),
        brightness=0.1,
        contrast=1.2,
        blur_sigma=1.0,
        occlusion=(0.1, 0.1, 0.3, 0.3),
    )
    img, lab = apply_augment(item["image"], item["landmarks"], d, 128)
    np.testing.assert_allclose(lab, item["landmarks"], atol=1e-4)
    assert not np.array_equal(img, item["image"])
    a, k = similarity(AugmentDraw(), 128, 128)
    np.testing.assert_allclose(a, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    assert k == 1.0


def test_samples_targets_and_seeded_loader():
    ds = SyntheticLandmarks(n=10, n_points=20, res=128)
    plain = LandmarkSamples(ds, 64)
    s = plain[3]
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.uint8
    np.testing.assert_allclose(
        s["target"].numpy().reshape(-1, 3),
        ds[3]["landmarks"] * (63 / 127) / 64,
        rtol=1e-5,
        atol=1e-6,
    )
    aug = LandmarkSamples(ds, 64, AugmentParams(), seed=5)
    order = [
        torch.cat([b["index"] for b in make_loader(aug, 4, True, seed=5, epoch=e)]).tolist()
        for e in (0, 0, 1)
    ]
    assert order[0] == order[1] and order[0] != order[2] and sorted(order[0]) == list(range(10))
    b0 = next(iter(make_loader(aug, 4, True, seed=5, epoch=2)))
    b2 = next(iter(make_loader(aug, 4, True, seed=5, epoch=2, workers=2)))
    assert torch.equal(b0["image"], b2["image"]) and torch.equal(b0["target"], b2["target"])
    aug.set_epoch(3)
    t3 = aug[0]["target"]
    aug.set_epoch(4)
    assert not torch.equal(t3, aug[0]["target"])


def test_device_colour_equals_the_per_sample_colour_change():
    """LandmarkSamples(device_colour=True) + to_input(colour=...) gives the image the uint8 LUT
    path gives, up to its rounding (1/255), with the same geometry and labels."""
    from densemark.train.augment import colour_affine
    from densemark.train.data import to_input

    ds = SyntheticLandmarks(n=4, n_points=20, res=128)
    p = AugmentParams(
        blur_prob=0.0, occlusion_prob=0.0, channel_gain=0.4, brightness=0.1, contrast=0.2
    )
    on_cpu = LandmarkSamples(ds, 96, p, seed=3)
    on_dev = LandmarkSamples(ds, 96, p, seed=3, device_colour=True)
    for i in range(4):
        a, b = on_cpu[i], on_dev[i]
        assert torch.equal(a["target"], b["target"]) and b["colour"].shape == (3, 2)
        d = on_cpu.draw(i)
        assert d.gains != (1.0, 1.0, 1.0)
        np.testing.assert_allclose(b["colour"].numpy(), colour_affine(d))
        x = to_input(b["image"][None], "cpu", b["colour"][None])[0]
        ref = a["image"].float() / 255.0
        assert (x - ref).abs().max() <= 0.5 / 255 + 1e-6
        assert not torch.equal(b["image"], a["image"])  # the loader left the colour out
    # identity colour: to_input without colour
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    ident = torch.tensor([[1.0, 0.0]] * 3).expand(2, 3, 2)
    assert torch.equal(to_input(x, "cpu", ident), to_input(x))


def test_chw_is_the_transpose():
    from densemark.train.data import chw

    img = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(chw(img), img.transpose(2, 0, 1))
    np.testing.assert_array_equal(
        chw(img[:, ::-1]), img[:, ::-1].transpose(2, 0, 1)
    )  # non-contiguous input
