"""predict on photos: given boxes, per-input errors, distinct outputs, safe reading, overlays,
the torch-free ONNX path, and the multi-view detector on real turned faces."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from densemark.cli import main
from densemark.core.errors import InputError
from densemark.core.images import read_image, write_jpeg
from densemark.train.detect import (
    box_iou,
    merge_detections,
    parse_box,
    raw_detections,
    read_boxes_file,
)
from densemark.train.export import export_onnx
from densemark.train.infer import load_onnx_predictor
from densemark.train.loop import run_train
from densemark.train.params import TrainParams
from densemark.train.photos import draw_overlay, image_header_size, output_stems, read_photo
from densemark.train.predict import load_predictor
from tests.factories import SyntheticLandmarks

pytestmark = pytest.mark.usefixtures("torch_one_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    torch.set_num_threads(1)
    run_train(
        TrainParams(width=0.25, input_size=32, epochs=1, batch_size=4, workers=0),
        SyntheticLandmarks(8, 24, 64),
        out,
        progress=False,
    )
    export_onnx(out / "model.pt", out / "model.onnx")
    return out


def _photo(path: Path, h: int = 120, w: int = 160, seed: int = 0) -> Path:
    write_jpeg(path, np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def _png_header(path: Path, w: int, h: int) -> Path:
    """A PNG whose IHDR claims w x h (the data is a few bytes: decoding would allocate w*h*3)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))  # fmt: skip
    return path


def test_parse_box_and_boxes_files(tmp_path):
    np.testing.assert_array_equal(parse_box("1,2,30.5,40"), [1, 2, 30.5, 40])
    for bad in ("1,2,3", "a,b,c,d", "10,10,5,20", "0,0,nan,4"):
        with pytest.raises(InputError, match="x0,y0,x1,y1"):
            parse_box(bad)
    j = tmp_path / "b.json"
    j.write_text(json.dumps({"a.jpg": [1, 2, 3, 4], "sub/b.png": [0, 0, 10, 10]}))
    got = read_boxes_file(j)
    assert sorted(got) == ["a.jpg", "sub/b.png"] and got["a.jpg"].tolist() == [1, 2, 3, 4]
    c = tmp_path / "b.csv"
    c.write_text("image,x0,y0,x1,y1\nphoto,5,6,50,60\n")
    assert read_boxes_file(c)["photo"].tolist() == [5, 6, 50, 60]
    c.write_text("name,a,b\nphoto,5,6\n")
    with pytest.raises(InputError, match="header"):
        read_boxes_file(c)
    j.write_text(json.dumps({"a.jpg": [1, 2, "x", 4]}))
    with pytest.raises(InputError, match=r"b\.json.*a\.jpg"):
        read_boxes_file(j)


def test_given_boxes_are_used_and_each_input_stands_alone(tmp_path, trained, capsys):
    a, b = tmp_path / "one" / "face.jpg", tmp_path / "two" / "face.jpg"  # same stem, two folders
    a.parent.mkdir()
    b.parent.mkdir()
    _photo(a), _photo(b, seed=1)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "out"
    rc = main(["predict", str(a), str(bad), str(b), "--checkpoint", str(trained / "model.pt"), "--out", str(out),
               "--box", "40,30,100,95"])  # fmt: skip
    cap = capsys.readouterr()
    assert rc == 1 and "broken.jpg" in cap.err and cap.err.count("error") == 1
    assert sorted(p.name for p in out.glob("*.json")) == ["one_face.json", "two_face.json"]
    r1, r2 = (json.loads((out / f"{n}_face.json").read_text()) for n in ("one", "two"))
    assert r1["faces"][0]["box"] == [40, 30, 100, 95] and r1["box_source"] == "given"
    assert (
        r1["faces"][0]["landmarks"] != r2["faces"][0]["landmarks"]
    )  # different pixels, not overwritten
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"image,x0,y0,x1,y1\n{a},10,10,60,70\n")
    rc = main(["predict", str(a), str(b), "--checkpoint", str(trained / "model.pt"), "--out", str(tmp_path / "o2"),
               "--boxes", str(boxes)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "no box for this image" in err and str(b) in err
    assert json.loads((tmp_path / "o2" / "one_face.json").read_text())["faces"][0]["box"] == [
        10,
        10,
        60,
        70,
    ]


def test_output_stems_are_distinct():
    names = output_stems(["x/a.jpg", "y/a.png", "a.jpg", "b.jpg", "x/a.jpg"])
    assert len(set(names)) == 5 and names[3] == "b"


def test_header_size_and_decompression_bomb(tmp_path, trained, capsys):
    j = _photo(tmp_path / "p.jpg", 37, 53)
    assert image_header_size(j) == (53, 37)
    big = _png_header(tmp_path / "bomb.png", 60000, 60000)
    assert image_header_size(big) == (60000, 60000)
    with pytest.raises(InputError, match="decompression bomb"):
        read_photo(big)
    assert read_photo(j).shape == (37, 53, 3)
    rc = main(["predict", str(big), str(j), "--checkpoint", str(trained / "model.pt"), "--out", str(tmp_path / "o"),
               "--box", "5,5,30,30"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "bomb.png" in err and "3,600,000,000 pixels" in err
    assert (tmp_path / "o" / "p.npy").is_file()


def test_overlay_scales_points_and_marks_the_68(tmp_path):
    k = 80
    kpt = np.arange(0, 68)
    pts = np.zeros((1, k, 3))
    pts[0, :, 0] = np.linspace(400, 1600, k)
    pts[0, :, 1] = 1000
    pts[0, 75, :2] = (1000, 1500)  # a lone dense point
    img = np.zeros((2000, 2000, 3), np.uint8)
    out = draw_overlay(img, pts, np.array([[300.0, 800, 1700, 1200]]), kpt)
    r = 2000 // 250
    x_k = int(pts[0, 10, 0])
    assert tuple(out[1000, x_k]) == (255, 40, 40) and tuple(out[1000, x_k + r + 2]) == (
        255,
        40,
        40,
    )  # big red keypoint
    assert tuple(out[1500, 1000]) == (40, 255, 80) and tuple(out[1500, 1000 + r - 1]) == (
        40,
        255,
        80,
    )
    assert out[1500, 1000 + r + 3].sum() == 0  # dense dots are smaller than keypoints
    assert out[5:60, 5:400].any()  # legend panel text
    small = draw_overlay(
        np.zeros((100, 100, 3), np.uint8), pts[:, :5] / 20, np.array([[0.0, 0, 99, 99]])
    )
    assert small.shape == (100, 100, 3)


def test_onnx_predicts_like_torch(trained):
    tp, op = load_predictor(trained / "model.pt"), load_predictor(trained / "model.onnx")
    assert op.landmark_set == tp.landmark_set and op.input_size == tp.input_size
    img = np.random.default_rng(3).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    boxes = np.array([[20.0, 15, 80, 70], [0, 0, 50, 40]])
    np.testing.assert_allclose(
        op.predict([img, img], boxes), tp.predict([img, img], boxes), atol=1e-3
    )


def test_onnx_predict_runs_without_torch(tmp_path, trained):
    img = _photo(tmp_path / "p.jpg")
    code = (
        "import sys\n"
        "from densemark.cli import main\n"
        f"rc = main(['predict', {str(img)!r}, '--checkpoint', {str(trained / 'model.onnx')!r}, '--out', {str(tmp_path / 'o')!r},"
        " '--box', '30,20,110,100'])\n"
        "assert rc == 0, rc\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
    assert np.load(tmp_path / "o" / "p.npy").shape == (24, 3)
    assert load_onnx_predictor(trained / "model.onnx").config["n_points"] == 24


def test_merge_is_mirror_symmetric_and_votes():
    from densemark.train.detect import RawBox

    raw = [RawBox((100, 100, 200, 200), "haar", "frontal", False), RawBox((104, 98, 203, 199), "haar", "frontal", True),
           RawBox((110, 105, 190, 190), "dlib", "frontal", False), RawBox((400, 50, 440, 90), "haar", "profile", False)]  # fmt: skip
    faces = merge_detections(raw)
    assert [f.score for f in faces] == [3, 1]
    assert box_iou(faces[0].box, raw[0].keypoint_box())[0, 0] > 0.7
    # a profile box on the mirror shifts the other way
    a = RawBox((0, 0, 100, 100), "haar", "profile", False).keypoint_box()
    b = RawBox((0, 0, 100, 100), "haar", "profile", True).keypoint_box()
    assert a[0] < b[0] and a[1] == b[1]


def _gt_box(mat: Path, width: int, mirrored: bool) -> np.ndarray:
    from densemark.sources.readers import read_fit_mat

    k = read_fit_mat(mat).pt3d_68.T[:, :2] - 1.0  # AFLW2000-3D is 1-based
    if mirrored:
        k[:, 0] = width - 1 - k[:, 0]
    return np.r_[k.min(0), k.max(0)]


@pytest.mark.real
@pytest.mark.slow
def test_detector_finds_every_real_face_and_its_mirror(tmp_path, trained, real_dir):
    files = sorted((real_dir / "aflw2000").glob("*.jpg"))
    assert len(files) == 6
    inputs = []
    for f in files:
        img = read_image(f)
        inputs.append(f)
        m = tmp_path / f"{f.stem}_mirror.jpg"
        write_jpeg(m, np.ascontiguousarray(img[:, ::-1]), 98)
        inputs.append(m)
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                *map(str, inputs),
                "--checkpoint",
                str(trained / "model.onnx"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    for f in files:
        width = read_image(f).shape[1]
        for mirrored in (False, True):
            stem = f"{f.stem}_mirror" if mirrored else f.stem
            rec = json.loads((out / f"{stem}.json").read_text())
            box = np.asarray(rec["faces"][0]["box"])
            gt = _gt_box(f.with_suffix(".mat"), width, mirrored)
            side = ((gt[2] - gt[0]) + (gt[3] - gt[1])) / 2
            centre = (box[:2] + box[2:]) / 2
            # the face found: the box centre lies on the face and its size is the face's
            assert (gt[:2] <= centre).all() and (centre <= gt[2:]).all(), (stem, box, gt)
            assert 0.6 < (box[2] - box[0]) / side < 1.6, (stem, box, gt)


@pytest.mark.real
def test_detection_is_mirror_symmetric(real_dir):
    img = read_image(sorted((real_dir / "aflw2000").glob("*.jpg"))[2])
    a = merge_detections(raw_detections(img))
    b = merge_detections(raw_detections(np.ascontiguousarray(img[:, ::-1])))
    assert len(a) == len(b) >= 1
    w = img.shape[1]
    mb = np.array([w - b[0].box[2], b[0].box[1], w - b[0].box[0], b[0].box[3]])
    np.testing.assert_allclose(a[0].box, mb, atol=1.0)


@pytest.mark.real
def test_tilted_head_found_by_the_rotated_pass(real_dir):
    import cv2

    from densemark.train.detect import detect_faces

    f = real_dir / "aflw2000" / "image00251.jpg"  # yaw -55: the hardest of the six
    img = read_image(f)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0)
    tilted = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    gt = _gt_box(f.with_suffix(".mat"), w, False)
    corners = (
        np.array([[gt[0], gt[1]], [gt[2], gt[1]], [gt[0], gt[3]], [gt[2], gt[3]]]) @ m[:, :2].T
        + m[:, 2]
    )
    lo, hi = corners.min(0), corners.max(0)
    faces = detect_faces(tilted)
    assert faces, "no face on the tilted photo"
    c = (faces[0].box[:2] + faces[0].box[2:]) / 2
    assert (lo <= c).all() and (c <= hi).all()


def test_onnx_without_densemark_metadata_reads_its_shapes(tmp_path, trained):
    from densemark.train.export import load_model, onnx_bytes

    m, ck = load_model(trained / "model.pt")
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(onnx_bytes(m, 32))  # a bare graph: no config, no landmark set
    p = load_predictor(plain)
    assert p.config == {"input_size": 32, "n_points": 24} and p.landmark_set == {}
    img = _photo(tmp_path / "x.jpg")
    rc = main(
        [
            "predict",
            str(img),
            "--checkpoint",
            str(plain),
            "--out",
            str(tmp_path / "o"),
            "--box",
            "20,20,90,90",
        ]
    )
    assert rc == 0 and np.load(tmp_path / "o" / "x.npy").shape == (24, 3)
