"""Face detector options for ``densemark predict``, compared on the real AFLW2000-3D images and
their mirrors (needs the real data: ``DENSEMARK_REAL_DATA`` or ``../shared/real``).

    python bench/bench_detect.py

A face counts as found when the detector's best face (its estimated 68-keypoint box,
:mod:`densemark.train.detect`) has its centre inside the ground-truth 68-point box and a side
within 0.6-1.6x the ground truth's; other boxes count as false alarms. Prints per option: found
of 12 (6 images + 6 mirrors), which were missed, false alarms, centre error (fraction of the
face side, over the found) and the median time per image (one process, this CPU).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from densemark.config import real_data_dir  # noqa: E402
from densemark.core.images import read_image  # noqa: E402
from densemark.sources.readers import read_fit_mat  # noqa: E402
from densemark.train.detect import (  # noqa: E402
    RawBox,
    dlib_available,
    dlib_boxes,
    haar_boxes,
    merge_detections,
    mirror_boxes,
)


def run(
    image: np.ndarray, haar_views: tuple[str, ...], use_dlib: bool, mirror: bool
) -> list[RawBox]:
    """Only the named detectors (so each option is timed for what it runs)."""
    w = image.shape[1]
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    out = []
    for m in (False, True) if mirror else (False,):
        g = np.ascontiguousarray(gray[:, ::-1]) if m else gray
        im = np.ascontiguousarray(image[:, ::-1]) if m else image
        for v in haar_views:
            b = haar_boxes(g, v)
            out += [RawBox(tuple(x), "haar", v, m) for x in (mirror_boxes(b, w) if m else b)]
        if use_dlib:
            for b, v in dlib_boxes(im):
                out.append(RawBox(tuple(mirror_boxes(b[None], w)[0] if m else b), "dlib", v, m))
    return out


def options() -> dict[str, object]:
    opts = {
        "Haar frontal default (former detector)": ((("frontal",), False, False), None),
        "Haar frontal default, image + mirror": ((("frontal",), False, True), None),
        "Haar frontal alt2, image + mirror": ((("frontal_alt2",), False, True), None),
        "Haar profile, image only": ((("profile",), False, False), None),
        "Haar profile, image + mirror": ((("profile",), False, True), None),
        "Haar frontal + alt2 + profile, image + mirror": (
            (("frontal", "frontal_alt2", "profile"), False, True),
            None,
        ),
    }
    if dlib_available():
        opts["dlib HOG (5 views), image only"] = (((), True, False), None)
        opts["dlib HOG, image + mirror"] = (((), True, True), None)
        opts["auto: all Haar + dlib HOG, image + mirror"] = (
            (("frontal", "frontal_alt2", "profile"), True, True),
            None,
        )
    return {k: (lambda img, a=a: merge_detections(run(img, *a))) for k, (a, _) in opts.items()}


def main() -> None:
    real = real_data_dir(default=ROOT.parent / "shared" / "real", base=ROOT)
    if real is None:
        print("real data not found (set DENSEMARK_REAL_DATA): nothing to compare")
        return
    cases = []
    for f in sorted((real / "aflw2000").glob("*.jpg")):
        s = read_fit_mat(f.with_suffix(".mat"))
        img = read_image(f)
        k = s.pt3d_68.T[:, :2] - 1.0
        for mirrored in (False, True):
            kk = k.copy()
            if mirrored:
                kk[:, 0] = img.shape[1] - 1 - kk[:, 0]
            im = np.ascontiguousarray(img[:, ::-1]) if mirrored else img
            cases.append((f"{f.stem}{'-mirror' if mirrored else ''}", s.yaw_degrees * (-1 if mirrored else 1), im,
                          np.r_[kk.min(0), kk.max(0)]))  # fmt: skip
    print(
        f"{len(cases)} faces: AFLW2000-3D {', '.join(f'{c[0]} (yaw {c[1]:+.0f})' for c in cases[::2])} and their mirrors"
    )
    print(f"{'option':<48}{'found':>7}{'false':>7}{'centre err':>12}{'ms/img':>8}  missed")
    for name, fn in options().items():
        found, false, errs, times, missed = 0, 0, [], [], []
        for cid, _, im, gt in cases:
            t = time.perf_counter()
            faces = fn(im)
            times.append(time.perf_counter() - t)
            side = ((gt[2] - gt[0]) + (gt[3] - gt[1])) / 2
            ok = False
            if faces:
                b = faces[0].box
                c = (b[:2] + b[2:]) / 2
                ok = bool(
                    (gt[:2] <= c).all() and (c <= gt[2:]).all() and 0.6 < (b[2] - b[0]) / side < 1.6
                )
                if ok:
                    errs.append(float(np.linalg.norm(c - (gt[:2] + gt[2:]) / 2) / side))
            found += ok
            false += len(faces) - ok
            if not ok:
                missed.append(cid)
        err = f"{np.mean(errs):.3f}" if errs else "-"
        print(
            f"{name:<48}{found:>4}/{len(cases):<2}{false:>7}{err:>12}{np.median(times) * 1e3:>8.0f}  {', '.join(missed)}"
        )


if __name__ == "__main__":
    main()
