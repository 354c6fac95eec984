"""The embedded default face model: a procedural morphable model in the BFM's conventions.

Geometry is a surface parameterised over UV (the mesh *is* a UV grid clipped to a
superelliptic face region, so triangles never overlap in UV and the layout is mirror-symmetric
under ``u -> 1 - u``). Units and orientation follow the BFM mean shape: micrometres, x to the
subject's left (image right in a frontal view), y up, z toward the camera, a face ~1.6e5 wide,
so 300W-LP ``Pose_Para`` scales (~1.3e-3) give a ~200 px face.

* :mod:`.layout`: the UV grid mesh, feature / keypoint / AFLW-21 UV positions, the mirror
  map, the jaw-contour lines, and the UV primitives (:func:`smoothstep`, :func:`gauss_bump`,
  :func:`flat_bump`, :func:`uv_frame`);
* :mod:`.mesh`: the mean shape;
* :mod:`.bases`: the identity and expression fields, their orthonormalisation, the EVs and
  the expression draw rules;
* :mod:`.writer`: :func:`build_model`, :func:`model_info`, :func:`write_model`,
  :func:`read_model_dir`.

Everything random is drawn from ``np.random.default_rng((seed, 100 + k))`` keys; nothing that
reaches the written files goes through BLAS / LAPACK, so they are byte-identical on any CPU
kernel.
"""

from densemark.faces.procedural.bases import (
    BFM_N_VERTICES,
    EXP_EYE_CLOSE,
    EXP_MOUTH_OPEN,
    EXP_NAMES,
    EYE_CLOSE_FULL,
    SHAPE_NAMES,
    constrain_expression,
    exp_ev,
    exp_fields,
    gram_schmidt,
    semantic_shape_fields,
    shape_basis,
    shape_ev,
    symmetrize,
)
from densemark.faces.procedural.layout import (
    AFLW21_NAMES,
    EAR,
    EYE_C,
    EYE_HALF_W,
    EYE_LO,
    EYE_UP,
    KPT_MIRROR,
    LIP_LO_V,
    LIP_UP_V,
    MOUTH_DU,
    MOUTH_V,
    N_JAW,
    NOSTRIL,
    aflw21_ids,
    aflw21_uv,
    flat_bump,
    gauss_bump,
    jaw_contour_lines,
    jaw_uv,
    kpt_uv,
    smoothstep,
    snap_to_vertices,
    uv_frame,
    uv_grid,
)
from densemark.faces.procedural.mesh import base_surface, feature_heights, mean_shape
from densemark.faces.procedural.writer import (
    GENERATOR,
    GENERATOR_VERSION,
    build_model,
    model_info,
    read_model_dir,
    write_model,
)

__all__ = [
    "AFLW21_NAMES", "BFM_N_VERTICES", "EAR", "EXP_EYE_CLOSE", "EXP_MOUTH_OPEN", "EXP_NAMES", "EYE_C",
    "EYE_CLOSE_FULL", "EYE_HALF_W", "EYE_LO", "EYE_UP", "GENERATOR", "GENERATOR_VERSION", "KPT_MIRROR",
    "LIP_LO_V", "LIP_UP_V", "MOUTH_DU", "MOUTH_V", "NOSTRIL", "N_JAW", "SHAPE_NAMES", "aflw21_ids",
    "aflw21_uv", "base_surface", "build_model", "constrain_expression", "exp_ev", "exp_fields",
    "feature_heights", "flat_bump", "gauss_bump", "gram_schmidt", "jaw_contour_lines", "jaw_uv", "kpt_uv",
    "mean_shape", "model_info", "read_model_dir", "semantic_shape_fields", "shape_basis", "shape_ev",
    "smoothstep", "snap_to_vertices", "symmetrize", "uv_frame", "uv_grid", "write_model",
]  # fmt: skip
