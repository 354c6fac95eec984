"""Left/right symmetry of the face template and of landmark sets.

The template's mirror is the UV mirror ``u -> res - 1 - u`` (the UV map is laid out
symmetrically: exact for 43,848 of PRNet's 43,867 face pixels). Conventions:

* the two centre columns (``|u - (res-1)/2| <= 0.5``) are the *midline*: the UV map has no
  centre column, so a midline vertex is its own mirror (half a pixel of tolerance);
* a vertex whose mirrored pixel is off the face falls back to the template vertex nearest
  to its 3D reflection in the template's symmetry plane (fitted on the exact pairs).

The resulting map is an involution wherever the UV mirror is exact.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from densemark.core.errors import InputError
from densemark.faces.template import FaceTemplate

MIRROR_SPACE = "uv-mirror"  # recorded in landmark sets: how a template vertex's mirror is found
MIRROR_CONVENTION = (  # recorded in landmark sets (mirror.convention): the rule above, in words
    "u -> res-1-u: the vertex at UV pixel (u, v) pairs with the vertex at (res-1-u, v); vertices on "
    "the two centre columns (|u - (res-1)/2| <= 0.5) pair with themselves; where the mirrored pixel "
    "is off the face, the vertex nearest the 3D reflection in the fitted symmetry plane"
)


@dataclass(frozen=True)
class TemplateMirror:
    """Attributes:
    ids: (V,) int64 mirror vertex of each template vertex.
    exact: (V,) bool, True where the UV mirror (or the midline rule) gives it.
    midline: (V,) bool, vertices on the two centre UV columns (their own mirror).
    normal: (3,) unit normal of the fitted 3D symmetry plane ``normal @ x = offset``.
    offset: plane offset.
    """

    ids: np.ndarray
    exact: np.ndarray
    midline: np.ndarray
    normal: np.ndarray
    offset: float

    def reflect(self, x: np.ndarray) -> np.ndarray:
        """Reflect (N, 3) points in the symmetry plane."""
        d = x @ self.normal - self.offset
        return x - 2.0 * d[:, None] * self.normal[None]


_CACHE: weakref.WeakKeyDictionary[FaceTemplate, TemplateMirror] = weakref.WeakKeyDictionary()


def template_mirror(template: FaceTemplate) -> TemplateMirror:
    """The mirror map of a template (cached per template object)."""
    hit = _CACHE.get(template)
    if hit is not None:
        return hit
    uv_m = template.mirror_ids.copy()
    u = template.pixel_uv[:, 0]
    midline = np.abs(2 * u - (template.res - 1)) <= 1
    ok = uv_m >= 0
    if ok.sum() < 3:
        raise InputError(None, "template", "too few UV-mirror pairs to fit a symmetry plane")
    v = template.vertices
    diff = v[ok] - v[uv_m[ok]]
    # principal direction of the pair differences = plane normal
    _, _, vt = np.linalg.svd(diff, full_matrices=False)
    n = vt[0] / np.linalg.norm(vt[0])
    if n[np.argmax(np.abs(n))] < 0:
        n = -n
    mid = 0.5 * (v[ok] + v[uv_m[ok]])
    offset = float(np.median(mid @ n))
    ids = np.where(ok, uv_m, -1)
    ids[midline] = np.flatnonzero(midline)
    miss = ids < 0
    tm = TemplateMirror(ids=ids, exact=~miss, midline=midline, normal=n, offset=offset)
    if miss.any():
        refl = tm.reflect(v[miss])
        _, nn = cKDTree(v).query(refl)
        ids[miss] = nn
    _CACHE[template] = tm
    return tm


def mirror_match(
    template: FaceTemplate, ids: np.ndarray, *, k: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Best one-to-one mirror matching of a landmark set.

    Each member's mirror position (the template position of its mirror vertex) is matched to a
    set member so that the pairing is an involution (pairs, plus self-pairs for points near the
    midline or left without a partner). Cost of a pair {i, j}: the mean of the two directed
    3D distances ``|pos(mirror(i)) - pos(j)|`` and ``|pos(mirror(j)) - pos(i)|``; pairs are taken
    greedily by increasing cost among each point's ``k`` nearest candidates (stable ties);
    exact pairs cost 0 and always win.

    Args:
        template: the face template.
        ids: (K,) template vertex ids (unique).

    Returns:
        perm: (K,) int64 involution, ``perm[i]`` = position of i's mirror partner.
        residual: (K,) float64 3D distance from i's mirror position to its partner.
    """
    ids = np.asarray(ids, np.int64)
    kk = len(ids)
    tm = template_mirror(template)
    p = template.vertices[ids]
    m = template.vertices[tm.ids[ids]]
    if kk == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    kq = min(k, kk)
    _, nn = cKDTree(p).query(m, k=kq)
    nn = nn.reshape(kk, kq)
    i = np.repeat(np.arange(kk), kq)
    j = nn.ravel()
    a, b = np.minimum(i, j), np.maximum(i, j)
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    a, b = pairs[:, 0], pairs[:, 1]
    cost = 0.5 * (np.linalg.norm(m[a] - p[b], axis=1) + np.linalg.norm(m[b] - p[a], axis=1))
    order = np.lexsort((b, a, cost))
    perm = np.full(kk, -1, np.int64)
    for x, y in zip(a[order].tolist(), b[order].tolist(), strict=True):
        if perm[x] < 0 and perm[y] < 0:
            perm[x], perm[y] = y, x
    left = perm < 0
    perm[left] = np.flatnonzero(left)
    residual = np.linalg.norm(m - p[perm], axis=1)
    exact = tm.ids[ids] == ids[perm]
    residual[exact] = 0.0
    return perm, residual
