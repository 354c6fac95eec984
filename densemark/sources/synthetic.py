"""Synthetic 300W-LP and AFLW2000-3D style sources, written in the real file formats.

Sample ``i`` of the training source (300W-LP style) draws everything from
``np.random.default_rng((seed, 0, i))``; the test source (AFLW2000-3D style) uses
``(seed, 1, i)``, so the two never share a draw. Each sample is a 450x450 JPEG and a ``.mat``
with exactly the real fields and dtypes:

* ``pt2d`` (2, 68) float64 (300W-LP) / (2, 21) float64 (AFLW), ``roi`` (1, 4) int16,
  ``Illum_Para`` (1, 10) float64, ``Color_Para`` (1, 7) float32, ``Tex_Para`` (199, 1) float64,
  ``Shape_Para`` (S, 1) float64, ``Exp_Para`` (E, 1) float64, ``Pose_Para`` (1, 7) float32
  ``[pitch, yaw, roll, tx, ty, tz, s]``; AFLW adds ``pt3d_68`` (3, 68) float32.
* ``pt3d_68`` (AFLW) is the posed keypoint vertices (computed from the float32 ``Pose_Para``
  as stored) in image space with ``y_img = h - 1 - y``. The 300W-LP ``pt2d`` follows 300W-LP's
  contour convention: the same points, except that the jaw points (0-16) on the side the yaw
  turns away are moved to the visible face outline, the vertex with the extreme image x on
  that point's jaw-contour line (:func:`densemark.faces.procedural.jaw_contour_lines`; on a
  model of another generator ``pt2d`` keeps the vertices). ``roi`` is 3DDFA's roi box of the
  points (square, side = the points' box diagonal).
* AFLW's 21 points not visible (back-facing or behind the z-buffer) are ``(-1, h + 2)``, the
  values AFLW2000-3D's own files hold (test ``x < 0``).
* ``Tex_Para`` holds the standard normals that drive the albedo (the albedo is a fixed function
  of them), ``Illum_Para`` = [ambient rgb, diffuse rgb, light elevation, light azimuth, 0, 20],
  ``Color_Para`` = [gain rgb, 0, 0, 0, 1].

Images: per-vertex albedo (skin tone + smooth variation, brows, eye whites and iris, lips,
mouth interior and teeth, nostrils, optional hair), Lambertian + ambient light of random
direction and colour, random backgrounds (gradient, shapes, blotches, blur), sensor noise and
a random JPEG quality.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from densemark.core import detmath
from densemark.core.atomic import save_npy, write_json
from densemark.core.images import write_jpeg
from densemark.core.matio import atomic_savemat
from densemark.core.report import RunReport, StageResult
from densemark.faces import procedural as fs
from densemark.faces.geometry import basis_rows
from densemark.faces.model import MorphableModel
from densemark.faces.params import ModelParams
from densemark.faces.pose import transform_3ddfa
from densemark.faces.render import Raster, render_with_raster, vertex_normals
from densemark.faces.stages import load_configured_model
from densemark.sources.params import SyntheticParams
from densemark.sources.texture import N_TEX, albedo, background  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

TRAIN_STREAM, TEST_STREAM = 0, 1
INVISIBLE_X = -1.0  # AFLW's marker of an unseen point (its y is h + 2 in the real files)
_MARGIN = 8.0  # keypoints are kept this many pixels inside the image


# ----------------------------------------------------------------------------- files


def roi_box(pts: np.ndarray) -> np.ndarray:
    """3DDFA's roi box of (2, K) image points: (4,) float64 ``[x0, y0, x1, y1]``, a square
    centred on the points' box whose side is that square's diagonal."""
    x0, y0 = pts[0].min(), pts[1].min()
    x1, y1 = pts[0].max(), pts[1].max()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    r = max(x1 - x0, y1 - y0) / 2
    half = np.sqrt(2.0) * r
    return np.array([cx - half, cy - half, cx + half, cy + half])


# ----------------------------------------------------------------------------- draws


def _trunc_normal(rng: np.random.Generator, std: float, lim: float) -> float:
    return float(np.clip(rng.normal(0.0, std), -lim, lim))


def draw_pose(rng: np.random.Generator, params: SyntheticParams) -> np.ndarray:
    """(7,) float32 ``Pose_Para`` before centring: angles (radians), translation, scale."""
    if rng.random() < params.yaw_tail_prob and params.yaw_max_deg > params.yaw_core_deg:
        ay = rng.uniform(params.yaw_core_deg, params.yaw_max_deg)
    else:
        ay = rng.uniform(0.0, params.yaw_core_deg)
    yaw = ay * (1 if rng.random() < 0.5 else -1)
    pitch = _trunc_normal(rng, params.pitch_std_deg, params.pitch_max_deg)
    roll = _trunc_normal(rng, params.roll_std_deg, params.roll_max_deg)
    s = rng.uniform(params.scale_min, params.scale_max)
    c = params.image_size / 2
    tx, ty = c + rng.uniform(-params.shift_px, params.shift_px, 2)
    tz = rng.uniform(-110.0, -40.0)
    return np.array([*np.radians([pitch, yaw, roll]), tx, ty, tz, s], np.float32)


def draw_coefficients(
    model: MorphableModel, params: SyntheticParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Identity (S,) and expression (E,) float64 coefficients ~ N(0, (sigma * EV)^2).

    On a model made by the procedural generator (``model.generator``) its draw rules apply
    (:func:`densemark.faces.procedural.constrain_expression`: the mouth only opens, the
    eyelids never cross).
    """
    sev = model.shape_ev if model.shape_ev.size == model.n_shape else np.ones(model.n_shape)
    eev = model.exp_ev if model.exp_ev.size == model.n_exp else np.ones(model.n_exp)
    shape = rng.standard_normal(model.n_shape) * sev * params.shape_sigma
    exp = rng.standard_normal(model.n_exp) * eev * params.exp_sigma
    if model.generator == fs.GENERATOR:
        exp = fs.constrain_expression(exp)
    return shape.astype(np.float64), exp.astype(np.float64)


# ----------------------------------------------------------------------------- one sample


def _visible(pts_img: np.ndarray, normals_z: np.ndarray, raster: Raster, tol: float) -> np.ndarray:
    """(K,) bool: inside the image, facing the camera and not behind the z-buffer."""
    h, w = raster.depth.shape
    x, y = np.rint(pts_img[:, 0]).astype(np.int64), np.rint(pts_img[:, 1]).astype(np.int64)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    vis = inside & (normals_z > 0)
    depth = np.pad(
        np.where(np.isfinite(raster.depth), raster.depth, np.inf), 1, constant_values=np.inf
    )
    xi, yi = x.clip(0, w - 1) + 1, y.clip(0, h - 1) + 1
    near = np.stack([depth[yi + dy, xi + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    lo = near.min(0)  # the farthest-back surface drawn in the 3x3 neighbourhood
    return vis & (pts_img[:, 2] >= lo - tol)


def contour_keypoints(
    img_v: np.ndarray, kpt_ind: np.ndarray, lines: list[np.ndarray] | None, yaw: float
) -> np.ndarray:
    """300W-LP's contour convention for the 68 points of one posed face.

    Args:
        img_v: (N, 3) float64 posed vertices in image space.
        kpt_ind: (68,) int64 keypoint vertex ids.
        lines: the 17 jaw-contour lines (vertex ids, see
            :func:`densemark.faces.procedural.jaw_contour_lines`), or None to keep the vertices.
        yaw: ``Pose_Para`` yaw in radians; ``yaw > 0`` turns the image-left side (points 0-7)
            away, ``yaw < 0`` the image-right side (points 9-16).

    Returns:
        (68, 3) float64: ``img_v[kpt_ind]``, except that each jaw point on the side turned
        away is the vertex of its line with the extreme image x on that side (the silhouette).
    """
    out = img_v[kpt_ind].copy()
    if lines is None or yaw == 0:
        return out
    away = range(0, 8) if yaw > 0 else range(9, 17)
    for k in away:
        x = img_v[lines[k], 0]
        out[k] = img_v[lines[k][np.argmin(x) if yaw > 0 else np.argmax(x)]]
    return out


def render_sample(
    model: MorphableModel,
    params: SyntheticParams,
    stream: int,
    index: int,
    extra_ids: np.ndarray | None = None,
) -> dict[str, object]:
    """Draw and render sample ``index`` of ``stream`` (0 = train, 1 = test).

    Returns:
        dict with ``image`` (H, W, 3) uint8 RGB, ``quality`` (JPEG), ``mat`` (the 300W-LP
        fields in file order), ``kpt`` (68, 3) image-space keypoint vertices, ``contour``
        (68, 3) the contour-convention points written as ``pt2d``, ``mask`` (H, W) bool the
        pixels the face covers, and with ``extra_ids`` also ``extra`` (K, 3) image-space points
        and ``extra_visible`` (K,) bool.
    """
    rng = np.random.default_rng((params.seed, stream, index))
    h = w = params.image_size
    shape, exp = draw_coefficients(model, params, rng)
    pose = draw_pose(rng, params)
    tex = rng.standard_normal(N_TEX)
    br = basis_rows(model)  # exact float32 sums: no BLAS kernel changes a vertex
    verts = br(br.coefficients(shape[None], exp[None], 1)).reshape(-1, 3)
    # keep the keypoints inside the image: shift the translation (stored in Pose_Para)
    kp = transform_3ddfa(verts[model.kpt_ind], pose.astype(np.float64))
    lo, hi = kp[:, :2].min(0), kp[:, :2].max(0)
    shift = np.maximum(_MARGIN - lo, 0) - np.maximum(hi - (np.array([w, h]) - 1 - _MARGIN), 0)
    pose[3:5] += shift.astype(np.float32)
    posed = transform_3ddfa(verts, pose.astype(np.float64))
    img_v = posed.copy()
    img_v[:, 1] = h - 1 - img_v[:, 1]
    # light
    el, az = np.radians(rng.uniform(-30, 60)), np.radians(rng.uniform(-70, 70))
    (saz, sel), (caz, cel) = detmath.sincos(np.array([az, el]))
    ldir = np.array([saz * cel, sel, caz * cel])
    tint = 1 + 0.04 * rng.standard_normal(3)
    amb = rng.uniform(params.ambient_min, params.ambient_max) * tint
    dif = rng.uniform(params.diffuse_min, params.diffuse_max) * np.ones(3)
    gain = np.clip(1 + 0.04 * rng.standard_normal(3), 0.88, 1.12)
    bg = background(rng, h, w)
    col = (
        albedo(model.uv, tex) * gain
        if model.uv is not None
        else np.full((model.n_vertices, 3), 0.7) * gain
    )
    img, raster = render_with_raster(
        img_v, model.triangles, col, h, w, bg, light_dir=ldir, ambient=amb, diffuse=dif
    )
    sigma = rng.uniform(0, 4)
    noise = rng.normal(0, sigma, img.shape)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    quality = int(rng.integers(params.jpeg_quality_min, params.jpeg_quality_max + 1))
    kpt = img_v[model.kpt_ind]
    lines = (
        fs.jaw_contour_lines(model.uv, model.kpt_ind)
        if model.generator == fs.GENERATOR and model.uv is not None
        else None
    )
    contour = contour_keypoints(img_v, model.kpt_ind, lines, float(pose[1]))
    illum = np.array([*amb, *dif, el, az, 0.0, 20.0])
    mat = {
        "pt2d": contour[:, :2].T.astype(np.float64),
        "roi": np.rint(roi_box(contour[:, :2].T)).astype(np.int16).reshape(1, 4),
        "Illum_Para": illum.reshape(1, 10),
        "Color_Para": np.array([*gain, 0, 0, 0, 1], np.float32).reshape(1, 7),
        "Tex_Para": tex.reshape(-1, 1),
        "Shape_Para": shape.reshape(-1, 1),
        "Exp_Para": exp.reshape(-1, 1),
        "Pose_Para": pose.reshape(1, 7),
    }
    out: dict[str, object] = {"image": img, "quality": quality, "mat": mat, "kpt": kpt, "contour": contour,
                              "mask": np.isfinite(raster.depth)}  # fmt: skip
    if extra_ids is not None:
        up = posed.copy()
        nz = vertex_normals(up, model.triangles)[extra_ids, 2]
        tol = 0.02 * pose[6] * 1.6e5  # 2 % of the face width, in image z units
        out["extra"] = img_v[extra_ids]
        out["extra_visible"] = _visible(img_v[extra_ids], nz, raster, tol)
    return out


# ----------------------------------------------------------------------------- sources


def _run(n: int, start: int, desc: str, one: Callable[[int], Path], out_dir: Path) -> list[Path]:
    """Generate samples ``start .. start + n - 1``; a failing sample is logged and quarantined
    in a run report ``failures_<start>_<end>.json`` (written when any failed), the others go on."""
    paths = []
    rep = RunReport(desc, params={"start": start, "n": n})
    for i in tqdm(range(start, start + n), desc=desc, unit="img", disable=None):
        try:
            paths.append(one(i))
            rep.count("written")
        except Exception as exc:  # noqa: BLE001 - one bad sample must not stop the batch
            log.warning("%s sample %d failed: %s: %s", desc, i, type(exc).__name__, exc)
            rep.quarantined(str(i), f"{type(exc).__name__}: {exc}")
    if rep.quarantine:
        rep.write(out_dir / f"failures_{start}_{start + n}.json")
    return paths


def generate_300wlp(
    model: MorphableModel, params: SyntheticParams, out_dir: str | Path, n: int, start: int = 0
) -> list[Path]:
    """Write ``n`` 300W-LP style samples ``SYN_image_{i:05d}_0.{jpg,mat}`` for ``i`` in
    ``start .. start + n - 1`` (keys ``(seed, 0, i)``).

    Returns:
        The ``.mat`` paths written (failed samples are skipped and recorded).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> Path:
        s = render_sample(model, params, TRAIN_STREAM, i)
        name = f"SYN_image_{i:05d}_0"
        write_jpeg(out / f"{name}.jpg", s["image"], s["quality"])
        return atomic_savemat(out / f"{name}.mat", s["mat"], oned_as="column")

    return _run(n, start, "synthetic 300W-LP", one, out)


def generate_aflw2000(
    model: MorphableModel, params: SyntheticParams, out_dir: str | Path, n: int
) -> list[Path]:
    """Write ``n`` AFLW2000-3D style samples ``image{i:05d}.{jpg,mat}`` (keys ``(seed, 1, i)``)
    and 3DDFA's benchmark arrays into ``out_dir/gt/`` in sorted file-name order:
    ``AFLW2000-3D.pts68.npy`` (n, 3, 68), ``AFLW2000-3D.pts21.npy`` (n, 2, 21),
    ``AFLW2000-3D.pose.npy`` (n,) yaw in degrees, ``AFLW2000-3D_crop.roi_box.npy`` (n, 4).

    Returns:
        The ``.mat`` paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids21 = fs.aflw21_ids(model)
    h = params.image_size

    def one(i: int) -> Path:
        s = render_sample(model, params, TEST_STREAM, i, extra_ids=ids21)
        pts = np.asarray(s["extra"])[:, :2].T.copy()
        vis = np.asarray(s["extra_visible"])
        pts[0, ~vis] = INVISIBLE_X
        pts[1, ~vis] = h + 2
        mat = dict(s["mat"])
        del mat[
            "roi"
        ]  # re-added below: AFLW2000-3D keeps it after Pose_Para, boxing the 68 vertices
        mat["pt2d"] = pts.astype(np.float64)
        mat["roi"] = np.rint(roi_box(np.asarray(s["kpt"])[:, :2].T)).astype(np.int16).reshape(1, 4)
        mat["pt3d_68"] = np.asarray(s["kpt"]).T.astype(np.float32)
        name = f"image{i:05d}"
        write_jpeg(out / f"{name}.jpg", s["image"], s["quality"])
        return atomic_savemat(out / f"{name}.mat", mat, oned_as="column")

    paths = _run(n, 0, "synthetic AFLW2000-3D", one, out)
    write_aflw2000_gt(out)
    return paths


def write_aflw2000_gt(folder: str | Path) -> dict[str, Path]:
    """(Re)write ``folder/gt/*.npy`` from the ``image*.mat`` files in ``folder`` (sorted by name)."""
    from densemark.core.matio import read_mat

    d = Path(folder)
    mats = sorted(d.glob("image*.mat"))
    pts68, pts21, yaw, roi = [], [], [], []
    for p in mats:
        m = read_mat(p)
        p68 = np.asarray(m["pt3d_68"], np.float32)
        pts68.append(p68)
        pts21.append(np.asarray(m["pt2d"], np.float32))
        yaw.append(np.degrees(float(np.asarray(m["Pose_Para"]).ravel()[1])))
        roi.append(roi_box(p68[:2].astype(np.float64)))
    g = d / "gt"
    arrays = {
        "AFLW2000-3D.pts68.npy": np.array(pts68, np.float32).reshape(-1, 3, 68),
        "AFLW2000-3D.pts21.npy": np.array(pts21, np.float32).reshape(-1, 2, 21),
        "AFLW2000-3D.pose.npy": np.array(yaw, np.float32),
        "AFLW2000-3D_crop.roi_box.npy": np.array(roi, np.float32).reshape(-1, 4),
    }
    out = {k: save_npy(g / k, a) for k, a in arrays.items()}
    write_json(g / "files.json", [p.name for p in mats])
    return out


def run_synthetic(
    kind: str,
    model_dir: str | Path,
    params: SyntheticParams,
    out_dir: str | Path,
    n: int | None = None,
    start: int = 0,
) -> StageResult:
    """Stage ``synth-300wlp`` (``kind="300wlp"``) or ``synth-aflw2000`` (``kind="aflw2000"``).

    ``n`` defaults to ``params.n_train`` / ``params.n_test``; ``start`` (300W-LP only) is the
    first sample index. The model folder holds ``BFM.mat`` + ``BFM_UV.mat`` (+ ``model_info.json``,
    whose generator decides the draw rules), read by the one configured-model loader.

    Returns:
        output ``source`` (the folder); metrics ``asked`` and ``written`` (fewer written than
        asked means some samples were quarantined: see ``failures_*.json`` in ``out_dir``); the
        ``.mat`` paths written as ``value``.
    """
    if kind not in ("300wlp", "aflw2000"):
        raise ValueError(f"kind must be '300wlp' or 'aflw2000', got {kind!r}")
    if n is None:
        n = params.n_train if kind == "300wlp" else params.n_test
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    model = load_configured_model(ModelParams(), model_dir)
    if kind == "300wlp":
        written = generate_300wlp(model, params, out_dir, n, start=start)
    else:
        written = generate_aflw2000(model, params, out_dir, n)
    return StageResult(
        outputs={"source": Path(out_dir)},
        metrics={"asked": n, "written": len(written)},
        value=written,
    )
