"""Import the paper's published landmark set (dense3DFaceLandmarks ``data/`` files).

Files (floats in scientific notation, one per line):

* ``vertices_520_sel_from_blender.txt``: (520,) template vertex ids, the landmark order;
* ``vertices_68_fil_520.txt``: (68,) positions of the 68 keypoints inside the 520;
* ``vertices_68.txt`` (optional): (68,) the keypoints as template ids, cross-checked.

The paper's set is not mirror-symmetric: its mirror pairing is the best matching with honest
residuals (see :func:`densemark.sampling.symmetry.mirror_match`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from densemark.core.errors import InputError
from densemark.core.validate import check_ids
from densemark.faces.template import FaceTemplate, read_index_list
from densemark.sampling.landmark_set import LandmarkSet, make_set

IDS_FILE = "vertices_520_sel_from_blender.txt"
KPT_POS_FILE = "vertices_68_fil_520.txt"
KPT_IDS_FILE = "vertices_68.txt"


def import_seed(
    seed_dir: str | os.PathLike, template: FaceTemplate, *, name: str = "basak2023-520"
) -> LandmarkSet:
    """The paper's set as a :class:`LandmarkSet` on ``template``.

    Raises:
        InputError: a file is missing or malformed, ids are out of range or repeated, or
            ``vertices_68.txt`` (when present) disagrees with the 520 list at the 68 positions.
    """
    d = Path(seed_dir)
    ids = read_index_list(d / IDS_FILE, "ids")
    pos = read_index_list(d / KPT_POS_FILE, "kpt68")
    ids = check_ids(ids, d / IDS_FILE, "ids", template.n_vertices)
    if pos.shape != (68,):
        raise InputError(d / KPT_POS_FILE, "kpt68", f"expected 68 positions, got {pos.shape[0]}")
    pos = check_ids(pos, d / KPT_POS_FILE, "kpt68", len(ids))
    if (d / KPT_IDS_FILE).is_file():
        k68 = read_index_list(d / KPT_IDS_FILE, "vertices_68")
        if k68.shape != (68,) or not np.array_equal(ids[pos], k68):
            raise InputError(
                d / KPT_IDS_FILE, "vertices_68", f"disagrees with {IDS_FILE}[{KPT_POS_FILE}]"
            )
    return make_set(
        template,
        ids,
        name=name,
        kpt68=pos,
        sampler={"method": "import", "source": "dense3DFaceLandmarks data/" + IDS_FILE},
    )
