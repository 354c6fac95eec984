"""``evaluate --boxes-from detector``: AFLW2000-3D scored through the face detector; misses counted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densemark.cli import main
from densemark.core.images import write_jpeg

pytestmark = [pytest.mark.usefixtures("torch_one_thread"), pytest.mark.real, pytest.mark.slow]


def _evaluate(tmp_path, checkpoint, gt, out, *extra):
    (tmp_path / "none.yaml").write_text("")  # an empty params file: the defaults
    return main(["--params", str(tmp_path / "none.yaml"), "evaluate", "--checkpoint", str(checkpoint), "--gt", str(gt),
                 "--out", str(out), *extra])  # fmt: skip


def test_detector_protocol_beside_the_gt_boxes(checkpoint, real_dir, tmp_path):
    gt = tmp_path / "aflw"
    gt.mkdir()
    src = real_dir / "aflw2000"
    for f in sorted(src.iterdir()):
        (gt / f.name).symlink_to(f)
    (gt / "image00050.jpg").unlink()  # a photo without a face: a detection miss
    write_jpeg(gt / "image00050.jpg", np.full((450, 450, 3), 127, np.uint8))
    assert _evaluate(tmp_path, checkpoint, gt, tmp_path / "det", "--boxes-from", "detector") == 0
    m = json.loads((tmp_path / "det" / "metrics.json").read_text())
    assert m["detection"] == {
        "detector": "auto",
        "n_images": 6,
        "detected": 5,
        "misses": 1,
        "miss_rate": pytest.approx(1 / 6),
    }
    assert m["aflw2000"]["n_images"] == 5
    rep = json.loads((tmp_path / "det" / "report.json").read_text())
    assert rep["detection"]["missed"] == ["image00050"]
    assert "1 detection misses" in (tmp_path / "det" / "results.md").read_text()
    # the ground-truth-box protocol is untouched: no detection keys, all six scored
    assert _evaluate(tmp_path, checkpoint, gt, tmp_path / "gt") == 0
    m_gt = json.loads((tmp_path / "gt" / "metrics.json").read_text())
    assert "detection" not in m_gt and m_gt["aflw2000"]["n_images"] == 6
    assert "detector" not in (tmp_path / "gt" / "results.md").read_text()


def test_detector_finds_all_six(checkpoint, real_dir, tmp_path):
    assert (
        _evaluate(
            tmp_path, checkpoint, real_dir / "aflw2000", tmp_path / "d", "--boxes-from", "detector"
        )
        == 0
    )
    m = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert m["detection"]["misses"] == 0 and m["aflw2000"]["n_images"] == 6
