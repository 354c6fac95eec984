"""3DDFA pose convention and PRNet's face crop, on synthetic values and on the real 300W-LP sample."""

from __future__ import annotations

import math

import numpy as np
import pytest

from densemark.core.errors import InputError
from densemark.faces.crop import CropTransform, crop_image, crop_square, crop_transform
from densemark.faces.io import load_bfm_mean_model
from densemark.faces.pose import (
    matrix_to_angles_3ddfa,
    pose_para_to_srt,
    rotation_3ddfa,
    to_image,
    transform_3ddfa,
)
from densemark.reference.faces import rx_ry_rz
from densemark.sources.readers import read_fit_mat


def random_angles(rng, n, max_yaw_deg=80.0):
    lim = 0.99 * math.pi
    return np.stack(
        [
            rng.uniform(-lim, lim, n),
            rng.uniform(-1, 1, n) * math.radians(max_yaw_deg),
            rng.uniform(-lim, lim, n),
        ],
        1,
    )


# --- rotation ----------------------------------------------------------------------------------


def test_rotation_matches_explicit_product_and_is_proper():
    rng = np.random.default_rng(0)
    ang = random_angles(rng, 50, 89)
    r = rotation_3ddfa(ang)
    assert r.shape == (50, 3, 3) and r.dtype == np.float64
    for a, ri in zip(ang, r, strict=True):
        np.testing.assert_allclose(ri, rx_ry_rz(*a), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


def test_rotation_batched_equals_unbatched():
    rng = np.random.default_rng(1)
    ang = random_angles(rng, 12).reshape(3, 4, 3)
    r = rotation_3ddfa(ang)
    assert r.shape == (3, 4, 3, 3)
    for i in range(3):
        for j in range(4):
            assert np.array_equal(r[i, j], rotation_3ddfa(ang[i, j]))
    assert rotation_3ddfa(list(ang[0, 0])).shape == (3, 3)


def test_rotation_conventions_by_hand():
    # yaw alone: x' = cos*x - sin*z (face3d's Ry has -sin(y) at [0, 2])
    r = rotation_3ddfa([0.0, math.radians(30), 0.0])
    np.testing.assert_allclose(
        r @ [1, 0, 0], [math.cos(math.radians(30)), 0, math.sin(math.radians(30))], atol=1e-12
    )
    np.testing.assert_allclose(rotation_3ddfa([0, 0, 0]), np.eye(3), atol=0)
    # R = Rx @ Ry @ Rz: roll is applied first
    a = (0.3, -0.4, 0.5)
    np.testing.assert_allclose(
        rotation_3ddfa(a),
        rotation_3ddfa([a[0], 0, 0]) @ rotation_3ddfa([0, a[1], 0]) @ rotation_3ddfa([0, 0, a[2]]),
        atol=1e-12,
    )
    with pytest.raises(InputError, match="angles"):
        rotation_3ddfa(np.zeros((4, 2)))


def test_matrix_to_angles_inverts_rotation():
    rng = np.random.default_rng(2)
    ang = random_angles(rng, 500, 80)
    back = matrix_to_angles_3ddfa(rotation_3ddfa(ang))
    assert back.shape == ang.shape
    np.testing.assert_allclose(back, ang, rtol=0, atol=1e-9)
    one = matrix_to_angles_3ddfa(rotation_3ddfa(ang[0]))
    assert one.shape == (3,)


# --- pose --------------------------------------------------------------------------------------


def test_transform_3ddfa_single_and_batched():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1e4, (20, 3)).astype(np.float32)
    pose = np.concatenate(
        [random_angles(rng, 4), rng.normal(100, 50, (4, 3)), rng.uniform(1e-4, 2e-3, (4, 1))], 1
    )
    for p in pose:
        want = p[6] * x.astype(np.float64) @ rx_ry_rz(*p[:3]).T + p[3:6]
        np.testing.assert_allclose(transform_3ddfa(x, p), want, rtol=1e-12, atol=1e-9)
    xb = np.stack([x, 2 * x, -x, x + 5])
    out = transform_3ddfa(xb, pose)
    assert out.shape == (4, 20, 3) and out.dtype == np.float64
    for i in range(4):
        np.testing.assert_allclose(out[i], transform_3ddfa(xb[i], pose[i]), rtol=1e-12, atol=1e-9)
    # one mesh, many poses
    many = transform_3ddfa(x, pose)
    for i in range(4):
        np.testing.assert_allclose(many[i], transform_3ddfa(x, pose[i]), rtol=1e-12, atol=1e-9)
    s, r, t = pose_para_to_srt(pose)
    assert s.shape == (4,) and r.shape == (4, 3, 3) and t.shape == (4, 3)
    with pytest.raises(InputError, match="Pose_Para"):
        transform_3ddfa(x, pose[0, :6])


def test_to_image_flips_y_only_and_is_an_involution():
    rng = np.random.default_rng(4)
    v = rng.normal(100, 50, (2, 10, 3))
    keep = v.copy()
    img = to_image(v, 450)
    assert np.array_equal(v, keep)  # input untouched
    assert np.array_equal(img[..., [0, 2]], v[..., [0, 2]])
    np.testing.assert_allclose(img[..., 1], 449 - v[..., 1])
    np.testing.assert_allclose(to_image(img, 450), v, atol=1e-12)


# --- crop --------------------------------------------------------------------------------------


def test_crop_transform_round_trip_and_matrix():
    tf = CropTransform(scale=0.7, tx=-12.5, ty=30.25, tz=-4.0, size=256)
    rng = np.random.default_rng(5)
    p = rng.normal(100, 80, (3, 17, 3))
    q = tf.apply(p)
    np.testing.assert_allclose(tf.invert(q), p, rtol=0, atol=1e-9)
    np.testing.assert_allclose(q[..., 2], 0.7 * p[..., 2] - 4.0)
    h = np.concatenate([p[0, :, :2], np.ones((17, 1))], 1)
    np.testing.assert_allclose((tf.matrix @ h.T).T[:, :2], q[0, :, :2], atol=1e-9)
    np.testing.assert_allclose(tf.affine, tf.matrix[:2])
    assert tf.to_dict() == {"scale": 0.7, "tx": -12.5, "ty": 30.25, "tz": -4.0, "size": 256}
    assert tf.as_vector().tolist() == [0.7, -12.5, 30.25, -4.0, 256.0]


def test_crop_square_prnet_rule():
    kpt = np.array([[10.7, 20.2], [110.9, 60.5], [50.0, 180.99], [-0.5, 100.0]])
    centre, side = crop_square(kpt)
    # box of the truncated keypoints: x in [0, 110], y in [20, 180]
    np.testing.assert_allclose(centre, [55.0, 100.0])
    assert side == float(int((110 + 160) / 2 * 1.5))
    c2, s2 = crop_square(kpt, scale=1.0)
    assert s2 == 135.0 and np.array_equal(c2, centre)


def test_crop_transform_maps_square_to_map():
    centre, side = np.array([200.0, 150.0]), 120.0
    tf = crop_transform(centre, side, res=256, z_min=-7.5)
    corners = np.array([[140.0, 90.0, 0.0], [260.0, 210.0, 7.5]])
    np.testing.assert_allclose(
        tf.apply(corners), [[0, 0, 7.5], [255, 255, 255 / 120 * 7.5 + 7.5]], atol=1e-9
    )
    np.testing.assert_allclose(tf.apply(np.array([[200.0, 150.0, 0.0]]))[0, :2], [127.5, 127.5])
    assert tf.size == 256


def test_crop_jitter_is_deterministic_and_bounded():
    rng0 = np.random.default_rng(6)
    kpt = rng0.uniform(100, 300, (68, 2))
    base_c, base_s = crop_square(kpt)
    k = np.trunc(kpt)
    old = (np.ptp(k[:, 0]) + np.ptp(k[:, 1])) / 2
    draws = []
    for i in range(40):
        a = crop_square(kpt, jitter=0.1, size_jitter=0.1, rng=np.random.default_rng((17, i)))
        b = crop_square(kpt, jitter=0.1, size_jitter=0.1, rng=np.random.default_rng((17, i)))
        assert np.array_equal(a[0], b[0]) and a[1] == b[1]
        assert (np.abs(a[0] - base_c) <= 0.1 * old + 1e-9).all()
        assert 0.9 * base_s - 1e-9 <= a[1] <= 1.1 * base_s + 1e-9
        draws.append((*a[0], a[1]))
    draws = np.array(draws)
    assert len(np.unique(draws, axis=0)) == 40  # each sample id gets its own crop
    assert (np.ptp(draws[:, :2], 0) > 0.1 * old).all()  # and the jitter is actually used
    # other seed, other crops; no rng, no jitter
    c, s = crop_square(kpt, jitter=0.1, size_jitter=0.1, rng=np.random.default_rng((18, 0)))
    assert not (np.array_equal(c, draws[0, :2]) and s == draws[0, 2])
    assert crop_square(kpt, jitter=0.1, size_jitter=0.1)[1] == base_s


def test_crop_square_rejects_bad_keypoints():
    with pytest.raises(InputError, match="keypoints"):
        crop_square(np.full((68, 2), 5.0))
    with pytest.raises(InputError, match="keypoints"):
        crop_square(np.array([[0.0, 1.0], [np.nan, 2.0]]))
    with pytest.raises(InputError, match="keypoints"):
        crop_square(np.zeros(68))


@pytest.mark.parametrize("channels", [None, 3])
def test_crop_image_puts_a_dot_where_the_transform_says(channels):
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w]
    dot = np.array([250.0, 90.0])
    blob = 255 * np.exp(-((xx - dot[0]) ** 2 + (yy - dot[1]) ** 2) / (2 * 4.0**2))
    img = blob.astype(np.uint8)
    if channels:
        img = np.repeat(img[..., None], channels, 2)
    tf = crop_transform(np.array([230.0, 120.0]), 160.0, res=128)
    out = crop_image(img, tf)
    assert (
        out.shape == ((128, 128) if channels is None else (128, 128, channels))
        and out.dtype == np.uint8
    )
    o = out.astype(np.float64) if channels is None else out[..., 0].astype(np.float64)
    oy, ox = np.mgrid[0:128, 0:128]
    got = np.array([(o * ox).sum(), (o * oy).sum()]) / o.sum()
    want = tf.apply(np.array([[*dot, 0.0]]))[0, :2]
    np.testing.assert_allclose(got, want, atol=0.3)
    # outside the source image the crop is black
    tf_out = crop_transform(np.array([-500.0, -500.0]), 100.0, res=32)
    assert (crop_image(img, tf_out) == 0).all()


# --- real 300W-LP sample -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def posed(real_dir):
    model = load_bfm_mean_model(real_dir / "bfm")
    s = read_fit_mat(real_dir / "300wlp" / "IBUG_image_008_1_0.mat")
    img = s.load_image()
    return model, s, img


@pytest.mark.real
def test_real_pose_puts_mean_keypoints_on_pt2d(posed):
    model, s, img = posed
    h = img.shape[0]
    assert img.shape == (450, 450, 3)
    image_v = to_image(transform_3ddfa(model.mean, s.pose_para), h)
    kpt = image_v[model.kpt_ind, :2]
    gt = s.pt2d.T
    box = np.ptp(gt, 0).mean()
    err = np.linalg.norm(kpt - gt, axis=1)
    # the mean face has no identity or expression: measured 6.4 % of the box on average
    assert err.mean() < 0.10 * box, f"mean error {err.mean():.1f} px on a {box:.0f} px box"
    # both the y flip and the rotation convention matter
    no_flip = transform_3ddfa(model.mean, s.pose_para)[model.kpt_ind, :2]
    assert np.linalg.norm(no_flip - gt, axis=1).mean() > 5 * err.mean()
    wrong_r = s.pose_para.copy()
    wrong_r[:3] = -wrong_r[:3]
    bad = to_image(transform_3ddfa(model.mean, wrong_r), h)[model.kpt_ind, :2]
    assert np.linalg.norm(bad - gt, axis=1).mean() > 2 * err.mean()
    # and the keypoints land on the image, inside the face box
    assert (kpt >= 0).all() and (kpt < h).all()


@pytest.mark.real
def test_real_crop_keeps_keypoints_inside(posed):
    model, s, img = posed
    image_v = to_image(transform_3ddfa(model.mean, s.pose_para), img.shape[0])
    centre, side = crop_square(image_v[model.kpt_ind, :2])
    z_min = float((image_v[:, 2] * (255 / side)).min())
    tf = crop_transform(centre, side, 256, z_min)
    k = tf.apply(image_v[model.kpt_ind])
    assert (k[:, :2] >= 0).all() and (k[:, :2] <= 255).all()
    # the 1.5x box leaves a margin: the keypoints fill roughly the middle 2/3
    span = np.ptp(k[:, :2], 0).mean()
    assert 150 < span < 190
    assert abs(tf.apply(image_v)[:, 2].min()) < 1e-6  # crop-space z starts at 0
    crop = crop_image(img, tf)
    assert crop.shape == (256, 256, 3) and crop.std() > 10
