from __future__ import annotations

import numpy as np
import pytest

from densemark.errors import InputError
from densemark.faces.template import FaceTemplate, grid_triangles, load_template, save_template


def _small(res: int = 32) -> FaceTemplate:
    v, u = np.mgrid[0:res, 0:res]
    inside = ((u - res / 2 + 0.5) ** 2 + (v - res / 2 + 0.5) ** 2) < (res / 2 - 2) ** 2
    face_ind = np.flatnonzero(inside.ravel())
    kpt = np.stack([np.full(68, res // 2), np.full(68, res // 2)])
    verts = np.column_stack([face_ind % res, face_ind // res, np.zeros(len(face_ind))]).astype(float)
    return FaceTemplate(face_ind, kpt, verts, grid_triangles(face_ind, res), res)


def test_saved_resolution_is_read_back(tmp_path):
    t = _small(32)
    save_template(t, tmp_path)
    back = load_template(tmp_path)
    assert back.res == 32
    np.testing.assert_array_equal(back.kpt_ids, t.kpt_ids)
    assert back.sha256() == t.sha256()
    with pytest.raises(InputError, match="saved at 32x32"):
        load_template(tmp_path, 256)
