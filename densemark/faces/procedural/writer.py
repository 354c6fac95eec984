"""Assemble the procedural model and write it in face3d's file formats."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from densemark.core.atomic import write_json
from densemark.core.errors import InputError
from densemark.faces.io import load_model, save_bfm_mat, save_uv_mat
from densemark.faces.model import MorphableModel
from densemark.faces.procedural.bases import (
    EXP_NAMES,
    SHAPE_NAMES,
    exp_ev,
    exp_fields,
    shape_basis,
    shape_ev,
)
from densemark.faces.procedural.layout import (
    AFLW21_NAMES,
    aflw21_ids,
    kpt_uv,
    snap_to_vertices,
    uv_grid,
)
from densemark.faces.procedural.mesh import mean_shape
from densemark.faces.procedural.params import ProceduralParams

GENERATOR = "densemark.faces.procedural"  # MorphableModel.generator and model_info.json "generator"
GENERATOR_VERSION = "2"  # 2: well-conditioned identity basis, bytes independent of the BLAS kernel


def build_model(params: ProceduralParams) -> MorphableModel:
    """The procedural morphable model for ``params`` (deterministic in ``params``, and the same
    bits under any BLAS kernel).

    Returns:
        A :class:`MorphableModel` with UV, ``n_shape`` identity and ``n_exp`` expression
        columns, ``shapeEV`` / ``expEV``, 68 keypoints, the mouth triangles last and
        ``generator`` :data:`GENERATOR`.
    """
    uv, tri, mirror, _ = uv_grid(params.grid)
    mean = mean_shape(uv)
    rng_shape = np.random.default_rng((params.seed, 100))
    rng_exp = np.random.default_rng((params.seed, 101))
    sbasis, _ = shape_basis(uv, mean, mirror, params.n_shape, rng_shape)
    exp_basis = np.stack([f.reshape(-1) for f in exp_fields(uv, mirror, params.n_exp, rng_exp)], 1)
    return MorphableModel(
        mean=mean.astype(np.float32),
        shape_basis=sbasis,
        exp_basis=exp_basis.astype(np.float32),
        triangles=tri,
        kpt_ind=snap_to_vertices(uv, kpt_uv()),
        uv=uv,
        shape_ev=shape_ev(params.n_shape),
        exp_ev=exp_ev(params.n_exp),
        name="procedural",
        generator=GENERATOR,
    )


def model_info(model: MorphableModel, params: ProceduralParams) -> dict[str, object]:
    """Provenance and annotations recorded beside the model (``model_info.json``); its
    ``generator`` is what :attr:`MorphableModel.generator` is read back from."""
    _, _, mirror, n_mouth = uv_grid(params.grid)
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "params": params.model_dump(mode="json"),
        "fingerprint": model.fingerprint(),
        "n_vertices": model.n_vertices,
        "n_triangles": int(model.triangles.shape[0]),
        "n_mouth_triangles": n_mouth,
        "units": "micrometres; x right, y up, z toward the camera (BFM)",
        "kpt_ind": model.kpt_ind.tolist(),
        "aflw21_ind": aflw21_ids(model).tolist(),
        "aflw21_names": list(AFLW21_NAMES),
        "shape_modes": list(SHAPE_NAMES),
        "exp_modes": list(EXP_NAMES),
        "mirror_checksum": int(mirror.sum()),
    }


def write_model(params: ProceduralParams, out_dir: str | Path) -> dict[str, Path]:
    """Write the procedural model as ``BFM.mat`` + ``BFM_UV.mat`` + ``model_info.json``.

    The files read back with :func:`densemark.faces.io.load_model` (and with the generator
    field by :func:`read_model_dir`); ``.mat`` headers carry a fixed description so the same
    params give byte-identical files, on any CPU and BLAS kernel.

    Returns:
        ``{"bfm": ..., "uv": ..., "info": ...}`` paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(params)
    _, _, _, n_mouth = uv_grid(params.grid)
    bfm = save_bfm_mat(model, out / "BFM.mat", n_mouth=n_mouth)
    uv = save_uv_mat(model.uv, out / "BFM_UV.mat")
    info = write_json(out / "model_info.json", model_info(model, params))
    return {"bfm": bfm, "uv": uv, "info": info}


def read_model_dir(model_dir: str | Path) -> MorphableModel:
    """A model folder (``BFM.mat`` + ``BFM_UV.mat``), with :attr:`MorphableModel.generator` set
    from ``model_info.json`` when one is there (a folder written by :func:`write_model`)."""
    d = Path(model_dir)
    m = load_model(d / "BFM.mat", d / "BFM_UV.mat")
    info = d / "model_info.json"
    if info.is_file():
        try:
            gen = json.loads(info.read_text(encoding="utf-8")).get("generator", "")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise InputError(info, "generator", f"not a JSON object: {exc}") from exc
        if not isinstance(gen, str):
            raise InputError(info, "generator", f"expected a string, got {type(gen).__name__}")
        m = replace(m, generator=gen)
    return m
