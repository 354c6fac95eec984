from __future__ import annotations

import numpy as np
import pytest

from densemark.core.errors import InputError
from densemark.faces.template import FaceTemplate, grid_triangles, load_template, save_template


def _small(res: int = 32) -> FaceTemplate:
    v, u = np.mgrid[0:res, 0:res]
    inside = ((u - res / 2 + 0.5) ** 2 + (v - res / 2 + 0.5) ** 2) < (res / 2 - 2) ** 2
    face_ind = np.flatnonzero(inside.ravel())
    kpt = np.stack([np.full(68, res // 2), np.full(68, res // 2)])
    verts = np.column_stack([face_ind % res, face_ind // res, np.zeros(len(face_ind))]).astype(
        float
    )
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


@pytest.mark.parametrize(
    "text,match",
    [
        ("1\n2\n", None),
        ("1 2\n3 4\n", "one number per line"),
        ("1\n-2\n", "out of range"),
        ("1\n2.5\n", "whole numbers"),
        ("1\n9\n", "out of range"),
    ],
)
def test_read_index_list(tmp_path, text, match):
    from densemark.faces.template import read_index_list

    p = tmp_path / "ids.txt"
    p.write_text(text)
    if match is None:
        np.testing.assert_array_equal(read_index_list(p, "ids", 9), [1, 2])
        return
    with pytest.raises(InputError, match=match) as ei:
        read_index_list(p, "ids", 9)
    assert ei.value.field == "ids" and str(p) in str(ei.value)
