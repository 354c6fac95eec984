"""Predictor: the crop rule, image <-> crop mapping, detector path and the predict command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from densemark.cli import main
from densemark.core.images import write_jpeg
from densemark.faces.crop import crop_square, crop_transform
from densemark.train.predict import (
    Predictor,
    box_to_crop,
    detect_faces,
    detector_to_landmark_boxes,
    load_predictor,
)
from tests.conftest import CHECKPOINT_POINTS

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_landmark_box_gives_the_training_crop():
    rng = np.random.default_rng(0)
    for _ in range(5):
        k = np.floor(rng.uniform(50, 300, (68, 2)))  # integer keypoints: crop_square truncates
        box = np.r_[k.min(0), k.max(0)]
        assert box_to_crop(box, 256) == crop_transform(*crop_square(k, 1.5), 256)


def test_detector_box_rule():
    kb = detector_to_landmark_boxes(np.array([[100.0, 50.0, 200.0, 150.0]]))[0]
    np.testing.assert_allclose((kb[:2] + kb[2:]) / 2, [150.0, 100.0 + 15.0])
    np.testing.assert_allclose(kb[2:] - kb[:2], [78.0, 78.0])


class _Constant(torch.nn.Module):
    def __init__(self, out: np.ndarray):
        super().__init__()
        self.out = torch.from_numpy(out.reshape(1, -1).astype(np.float32))

    def forward(self, x):
        return self.out.expand(len(x), -1)


def test_predictions_map_crop_points_back_to_the_image():
    size, k = 64, 5
    crop_pts = np.random.default_rng(1).uniform(0, 63, (k, 3))
    pred = Predictor(
        _Constant(crop_pts / size),
        {"input_size": size, "n_points": k},
        {},
        torch.device("cpu"),
        batch_size=1,
    )
    boxes = np.array([[10.0, 20.0, 110.0, 140.0], [300.0, 40.0, 360.0, 90.0]])
    img = np.zeros((400, 500, 3), np.uint8)
    got = pred.predict([img, img], boxes)
    for b, g in zip(boxes, got, strict=True):
        # naive reference: crop side 1.5 x mean box side, centred, onto [0, size - 1]
        side = int(1.5 * ((b[2] - b[0]) + (b[3] - b[1])) / 2)
        sc = (size - 1) / side
        x0 = (b[0] + b[2]) / 2 - side / 2
        y0 = (b[1] + b[3]) / 2 - side / 2
        np.testing.assert_allclose(g[:, 0], crop_pts[:, 0] / sc + x0, rtol=1e-5)
        np.testing.assert_allclose(g[:, 1], crop_pts[:, 1] / sc + y0, rtol=1e-5)
        np.testing.assert_allclose(g[:, 2], crop_pts[:, 2] / sc, rtol=1e-5)


def test_loaded_predictor_shapes(checkpoint):
    p = load_predictor(checkpoint)
    assert p.landmark_set["n_points"] == CHECKPOINT_POINTS and p.config["input_size"] == 32
    out = p.predict([np.zeros((100, 120, 3), np.uint8)], np.array([[20, 20, 80, 90]]), "detector")
    assert out.shape == (1, CHECKPOINT_POINTS, 3) and out.dtype == np.float32
    with pytest.raises(ValueError, match="box_kind"):
        p.predict([np.zeros((10, 10, 3), np.uint8)], np.array([[1, 1, 5, 5]]), "other")


def test_predict_command_errors_name_the_file(tmp_path, checkpoint, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    blank = tmp_path / "blank.jpg"
    write_jpeg(blank, np.full((120, 160, 3), 128, np.uint8))
    rc = main(
        [
            "predict",
            str(bad),
            str(blank),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert rc != 0
    assert "broken.jpg" in err and "cannot decode" in err
    assert "blank.jpg" in err and "no face" in err


@pytest.mark.real
def test_predict_on_a_real_photo(tmp_path, checkpoint, real_dir):
    img = sorted((real_dir / "aflw2000").glob("*.jpg"))[0]
    rc = main(["predict", str(img), "--checkpoint", str(checkpoint), "--out", str(tmp_path)])
    assert rc == 0
    pts = np.load(tmp_path / f"{img.stem}.npy")
    assert pts.shape == (CHECKPOINT_POINTS, 3)
    rec = json.loads((tmp_path / f"{img.stem}.json").read_text())
    assert len(rec["faces"]) == 1 and np.allclose(rec["faces"][0]["landmarks"], pts, atol=1e-4)
    assert (tmp_path / f"{img.stem}_overlay.png").stat().st_size > 0
    from densemark.core.images import read_image

    assert len(detect_faces(read_image(img))) >= 1
