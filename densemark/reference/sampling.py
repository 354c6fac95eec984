"""Reference implementations of the sampling part (slow, obviously correct): tests bound the
fast paths against them."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from densemark.faces.template import FaceTemplate
from densemark.sampling.symmetry import template_mirror


def optimal_mirror_match(template: FaceTemplate, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference (slow, O(K^3)) matching: Hungarian assignment of mirror positions to members.

    Not necessarily an involution; used in tests to bound the greedy matching's cost.
    """
    ids = np.asarray(ids, np.int64)
    tm = template_mirror(template)
    p = template.vertices[ids]
    m = template.vertices[tm.ids[ids]]
    c = np.linalg.norm(m[:, None] - p[None], axis=-1)
    _, col = linear_sum_assignment(c)
    return col.astype(np.int64), c[np.arange(len(ids)), col]
