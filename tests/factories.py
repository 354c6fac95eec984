"""Test fixtures in one place: small self-made models, templates and samples for tests that must
run without the real data (the real reference data comes through ``conftest.real_dir``)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import scipy.io as sio

from densemark.core.images import decode_jpeg, encode_jpeg
from densemark.core.seeding import rng_for
from densemark.datasets.params import BuildParams, SplitParams
from densemark.datasets.plan import BuildPaths
from densemark.faces import procedural as fs
from densemark.faces.model import MorphableModel
from densemark.faces.params import ModelParams
from densemark.faces.procedural.params import ProceduralParams
from densemark.faces.stages import load_configured_model, run_template
from densemark.faces.template import FaceTemplate, grid_triangles
from densemark.sampling.landmark_set import make_set
from densemark.sources import synthetic as ds
from densemark.sources.params import SyntheticParams


def grid_model(n: int = 24, n_shape: int = 199, n_exp: int = 29, seed: int = 0) -> MorphableModel:
    """A bumped square patch: n*n vertices on a UV grid, BFM-like units (~1e5 wide), random bases."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    uv = np.stack([u.ravel(), v.ravel()], 1)
    x = (uv[:, 0] - 0.5) * 1.6e5
    y = (uv[:, 1] - 0.5) * 2.0e5
    z = 6e4 * np.exp(-((uv[:, 0] - 0.5) ** 2 + (uv[:, 1] - 0.5) ** 2) / 0.08)
    mean = np.stack([x, y, z], 1).astype(np.float32)
    # triangles over the grid (pixel ids on an n x n "map" are vertex ids here)
    tri = grid_triangles(np.arange(n * n), n)
    kpt = rng.choice(np.arange(n * n).reshape(n, n)[2:-2, 2:-2].ravel(), 68, replace=False)
    return MorphableModel(
        mean=mean,
        shape_basis=(rng.normal(0, 1, (3 * n * n, n_shape)) * 5).astype(np.float32),
        exp_basis=(rng.normal(0, 1, (3 * n * n, n_exp)) * 50).astype(np.float32),
        triangles=tri,
        kpt_ind=np.sort(kpt).astype(np.int64),
        uv=uv,
        shape_ev=np.ones(n_shape, np.float32),
        exp_ev=np.ones(n_exp, np.float32),
        name="grid",
    )


def write_fit(
    folder: Path,
    name: str,
    pose: np.ndarray,
    shape: np.ndarray | None = None,
    exp: np.ndarray | None = None,
    h: int = 300,
) -> Path:
    """A 300W-LP-format sample: a gray ``<name>.jpg`` and ``<name>.mat``."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    img = np.full((h, h, 3), 128, np.uint8)
    cv2.imwrite(str(folder / f"{name}.jpg"), img)
    sio.savemat(
        folder / f"{name}.mat",
        {
            "Shape_Para": np.zeros((199, 1)) if shape is None else shape.reshape(199, 1),
            "Exp_Para": np.zeros((29, 1)) if exp is None else exp.reshape(29, 1),
            "Pose_Para": np.asarray(pose, np.float32).reshape(1, 7),
            "pt2d": np.zeros((2, 68)),
            "roi": np.zeros((1, 4), np.int16),
        },
    )
    return folder / f"{name}.mat"


def disc_template(
    res: int = 64, *, rx: float = 0.42, ry: float = 0.46, bump: float = 0.25
) -> FaceTemplate:
    """An elliptic disc of UV pixels with a smooth, left/right symmetric bumped height field.

    The disc is centred on the UV map (so ``u -> res - 1 - u`` is exact); vertex positions are
    ``x = u - c``, ``y = c - v``, ``z = 2 * rx * res * bump * (dome + nose)``. The 68 keypoints: 0..16 on
    the lower (jaw) half of an ellipse inside the rim, 17..67 on a smaller inner ellipse except
    30 (nose tip) at the centre.

    ``load_template`` assumes ``res = 256``: for a saved copy use ``res=256`` with small radii.

    Returns:
        A :class:`FaceTemplate` with about ``3.1 * rx * ry * res**2`` vertices.
    """
    c = (res - 1) / 2
    v, u = np.mgrid[0:res, 0:res]
    x, y = (u - c) / (rx * res), (v - c) / (ry * res)
    mask = x**2 + y**2 <= 1.0
    face_ind = np.flatnonzero(mask.ravel()).astype(np.int64)
    uu, vv = face_ind % res, face_ind // res
    xn, yn = (uu - c) / (rx * res), (vv - c) / (ry * res)
    r2 = xn**2 + yn**2
    z = (
        2
        * rx
        * res
        * bump
        * (np.sqrt(np.clip(1 - r2, 0, None)) + 0.6 * np.exp(-(xn**2 + (yn + 0.1) ** 2) / 0.02))
    )
    verts = np.stack([uu - c, c - vv, z], 1).astype(np.float64)

    def ring(a: np.ndarray, s: float) -> np.ndarray:
        return np.stack([c + s * rx * res * np.cos(a), c + s * ry * res * np.sin(a)])

    jaw = ring(np.linspace(np.pi, 0, 17), 0.9)  # v grows downward: sin > 0 is the lower half
    inner = ring(np.linspace(0, 2 * np.pi, 51, endpoint=False), 0.5)
    kpt = np.concatenate([jaw, inner], 1)
    kpt = np.concatenate([kpt[:, :30], [[c + 0.5], [c]], kpt[:, 30:67]], 1)
    kpt = np.clip(np.round(kpt), 0, res - 1).astype(np.int64)
    return FaceTemplate(
        face_ind=face_ind,
        uv_kpt_ind=kpt,
        vertices=verts,
        triangles=grid_triangles(face_ind, res),
        res=res,
    )


# ----------------------------------------------------------------------------- dataset-build world

GRID = 61
UV_RES = 128


def make_world(root: Path, n: int = 8, n_points: int = 40, seed: int = 0) -> dict:
    """Write model, template, a mirror-exact landmark set (with the 68 keypoints) and ``n`` synthetic samples."""
    mdir, tdir, src = root / "model", root / "template", root / "src"
    proc = ProceduralParams(grid=GRID)
    fs.write_model(proc, mdir)
    mp = ModelParams(source="bfm", dir=mdir, cache_dir=root / "cache", uv_res=UV_RES)
    tpl = run_template(mp, mdir, tdir).value
    rng = np.random.default_rng(seed)
    mir = tpl.mirror_ids
    pool = np.flatnonzero(mir >= 0)
    pick = rng.choice(pool, n_points // 2, replace=False)
    kpt = tpl.kpt_ids.copy()
    # coarse grids merge the inner and outer mouth corners: move the inner ones a pixel toward the midline
    uv = tpl.pixel_uv
    for i in (60, 64):
        u, v = uv[kpt[i]]
        kpt[i] = tpl.id_map[v, u + (1 if u < (tpl.res - 1) / 2 else -1)]
    ids = list(
        dict.fromkeys(
            [*kpt.tolist(), *mir[kpt][mir[kpt] >= 0].tolist(), *pick.tolist(), *mir[pick].tolist()]
        )
    )
    pos = {v: i for i, v in enumerate(ids)}
    lset = make_set(tpl, ids, name="test-set", kpt68=[pos[v] for v in kpt.tolist()])
    set_path = lset.save(root / "set.json")
    model = load_configured_model(mp, mdir)
    ds.generate_300wlp(model, SyntheticParams(image_size=200, shift_px=5.0), src, n)
    return {
        "model_params": mp,
        "model_dir": mdir,
        "template_dir": tdir,
        "set_path": set_path,
        "source_dir": src,
        "template": tpl,
        "set": lset,
        "model": model,
    }


def build_paths(w: dict, out: Path) -> BuildPaths:
    return BuildPaths(
        model_dir=w["model_dir"],
        template_dir=w["template_dir"],
        set_path=w["set_path"],
        source_dir=w["source_dir"],
        out_dir=out,
    )


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (subfolders and dot files included) by relative posix path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def tree_sha256(folder: Path) -> dict[str, str]:
    """:func:`tree_bytes` with each file's sha256 instead of its bytes."""
    return {name: hashlib.sha256(b).hexdigest() for name, b in tree_bytes(folder).items()}


def build_argv(params: Path, w: dict, out: Path) -> list[str]:
    """``[params file, *BuildPaths fields]`` as strings, for a script that rebuilds them with
    ``BuildPaths(*sys.argv[2:])``."""
    return [str(params), *(str(x) for x in dataclasses.astuple(build_paths(w, out)))]


def build_params_file(w: dict, path: Path, **build) -> Path:
    """A params file (model, build, splits sections) for a CLI build of the world ``w``:
    :func:`small_build_params` with ``build`` overrides."""
    import yaml

    mp = w["model_params"]
    data = {
        "model": {
            "source": "bfm",
            "dir": str(mp.dir),
            "cache_dir": str(mp.cache_dir),
            "uv_res": mp.uv_res,
        },
        "build": small_build_params(**build).model_dump(mode="json"),
        "splits": SPLITS.model_dump(mode="json"),
    }
    path.write_text(yaml.safe_dump(data))
    return path


class KillAtChunk:
    """A build's shard hook (``write_chunk(..., hook=)``) that SIGKILLs its process when chunk
    ``k`` is about to rename its first shard into place (picklable: usable with a pool)."""

    def __init__(self, k: int):
        self.k = k

    def __call__(self, k: int, tmp: Path) -> None:
        if k == self.k:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


def small_build_params(**kw) -> BuildParams:
    base = dict(
        res=64, chunk_size=3, row_group_size=4, formats=["parquet", "hdf5"], workers=1, batch=2
    )
    base.update(kw)
    return BuildParams(**base)


SPLITS = SplitParams(seed=0, val=0.25, test=0.25)


# ----------------------------------------------------------------------------- training data
# A small in-memory dataset with the item format of ``ShardDataset``: a filled ellipse with a dot
# at every landmark, labels in crop pixels (x right, y down, z >= 0).


def synthetic_points(rng: np.random.Generator, n_points: int, res: int) -> np.ndarray:
    """(K, 3) float32 points on a random half-ellipsoid 'face' inside the crop (crop pixels)."""
    base = rng_for(12345, "layout").uniform(
        -1, 1, (n_points, 2)
    )  # the same layout for every sample
    base /= np.maximum(1.0, np.linalg.norm(base, axis=1, keepdims=True))
    cx, cy = res / 2 + rng.uniform(-0.06, 0.06, 2) * res
    ax, ay = res * rng.uniform(0.22, 0.3), res * rng.uniform(0.28, 0.36)
    th = rng.uniform(-0.3, 0.3)
    c, s = np.cos(th), np.sin(th)
    xy = base * [ax, ay]
    xy = xy @ np.array([[c, s], [-s, c]]) + [cx, cy]
    z = np.sqrt(np.clip(1 - (base**2).sum(1), 0, None)) * ax * 0.8
    return np.column_stack([xy, z]).astype(np.float32)


def render_points(points: np.ndarray, res: int, rng: np.random.Generator) -> np.ndarray:
    """(res, res, 3) uint8 RGB: noisy background, a skin ellipse, a dark dot per point."""
    img = rng.integers(0, 80, (res, res, 3), dtype=np.uint8)
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    centre = tuple(int(v) for v in (lo + hi) / 2)
    axes = tuple(int(v) for v in (hi - lo) / 2 + 3)
    cv2.ellipse(img, centre, axes, 0, 0, 360, tuple(int(v) for v in rng.integers(150, 230, 3)), -1)
    for x, y in points[:, :2]:
        cv2.circle(img, (int(round(x)), int(round(y))), 1, (20, 20, 20), -1)
    return img


class SyntheticLandmarks:
    """``n`` samples of ``n_points`` landmarks on ``res`` crops; items as ``ShardDataset``'s.

    Images are stored as JPEG bytes and decoded per item (like the shards).
    """

    def __init__(
        self, n: int = 16, n_points: int = 68, res: int = 256, seed: int = 0, jpeg: bool = True
    ):
        self.n_points, self.res = n_points, res
        self.points = []
        self.images: list[Any] = []
        for i in range(n):
            rng = rng_for(seed, "synthetic-landmarks", i)
            pts = synthetic_points(rng, n_points, res)
            img = render_points(pts, res, rng)
            self.points.append(pts)
            self.images.append(encode_jpeg(img, 95) if jpeg else img)
        kpt = list(range(min(68, n_points)))
        self.landmark_set = {
            "name": f"synthetic-{n_points}",
            "sha256": f"synthetic-{n_points}-{res}",
            "n_points": n_points,
            "kpt68": kpt,
            "mirror_perm": list(range(n_points)),
        }
        self.manifest_sha256 = f"synthetic-{n}-{seed}"

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        img = self.images[i]
        img = decode_jpeg(img) if isinstance(img, bytes) else img
        pts = self.points[i]
        return {
            "image": img,
            "landmarks": pts,
            "kpt68": pts[self.landmark_set["kpt68"]],
            "id": f"synthetic_{i:05d}",
            "flip": False,
            "yaw": 0.0,
        }
