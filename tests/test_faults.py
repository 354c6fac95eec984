"""Fault injection: bad source files, other people's folders, concurrent writers, write errors.

Each test here failed on the code before issue 17 and names what it checks. The kill-at-a-random-
moment test of the build stays in ``tests/test_build.py`` (``test_sigkill_then_rerun_is_byte_identical``);
the bad-params tests are in ``tests/test_config.py``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.io as sio

from densemark.cli import main
from densemark.core import outdir
from densemark.core.errors import InputError
from densemark.core.images import header_size, probe_image
from densemark.datasets import build as B
from densemark.datasets import chunks as C
from densemark.datasets import plan as P
from tests.factories import (
    SPLITS,
    build_argv,
    build_params_file,
    build_paths,
    small_build_params,
    tree_bytes,
)

ROOT = Path(__file__).resolve().parents[1]


def _rows(folder: Path) -> dict[str, dict]:
    """Every row of a built dataset's Parquet shards, by id (every column, as Python values)."""
    out = {}
    for p in sorted(folder.glob("data/*.parquet")):
        t = pq.read_table(p).to_pydict()
        for i, rid in enumerate(t["id"]):
            out[rid] = {c: v[i] for c, v in t.items()}
    return out


@pytest.fixture
def good(world_dataset):
    """A build of the world's good samples alone."""
    return world_dataset[0]


def _cli(w: dict, params: Path, source: Path, out: Path, *extra: str) -> list[str]:
    return ["--params", str(params), "build", "--template", str(w["template_dir"]), "--set", str(w["set_path"]),
            "--source", str(source), "--out", str(out), *extra]  # fmt: skip


# ----------------------------------------------------------------------------- image headers


def _bomb(w: int = 30000, h: int = 30000) -> bytes:
    """A small real JPEG whose frame header is patched to claim ``w`` x ``h`` pixels."""
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    b = bytearray(buf.tobytes())
    i = b.index(b"\xff\xc0")
    b[i + 5 : i + 9] = h.to_bytes(2, "big") + w.to_bytes(2, "big")
    return bytes(b)


def test_header_size_reads_jpeg_and_png_without_decoding(tmp_path, monkeypatch):
    img = np.zeros((20, 30, 3), np.uint8)
    for ext, flags in ((".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", [])):
        ok, buf = cv2.imencode(ext, img, flags)
        assert header_size(buf.tobytes()) == (30, 20)
    assert header_size(_bomb(30000, 20000)) == (30000, 20000)
    # fill bytes before a marker and an APP segment before the frame header are walked over
    ok, buf = cv2.imencode(".jpg", img)
    b = buf.tobytes()
    assert header_size(b[:2] + b"\xff\xe1\x00\x06abcd" + b"\xff" + b[2:]) == (30, 20)
    p = tmp_path / "bomb.jpg"
    p.write_bytes(_bomb())
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("decoded"))
    assert probe_image(p) == (30000, 30000)
    with pytest.raises(InputError, match="over build.max_image_pixels = 40.0 MP") as e:
        C.read_source_image(p, small_build_params())
    assert e.value.path == str(p) and e.value.field == "image"
    for data, msg in ((b"", "empty"), (b"GIF89a....", "not a JPEG or PNG"), (b[:30], "cut short"),
                      (b"\x89PNG\r\n\x1a\n\x00\x00", "cut short"), (b[:2] + b"\x00\x00", "damaged")):  # fmt: skip
        with pytest.raises(InputError, match=msg):
            header_size(data, "x.jpg")


# ----------------------------------------------------------------------------- bad source files


def _bad_source(w: dict, root: Path) -> tuple[Path, set[str]]:
    """The world's good samples plus one of every kind of bad file; returns (folder, bad file names)."""
    src = root / "src"
    shutil.copytree(w["source_dir"], src)
    mat = sorted(src.glob("*.mat"))[0]
    jpg = mat.with_suffix(".jpg")
    ok, whole = cv2.imencode(".jpg", cv2.imread(str(jpg)))
    sos = whole.tobytes().index(b"\xff\xda")
    images = {
        "BAD_empty_0.jpg": b"",  # zero bytes
        "BAD_text_0.jpg": b"not an image at all\n",  # not a JPEG/PNG
        "BAD_bomb_0.jpg": _bomb(),  # claims 30000 x 30000 in 600 bytes
        "BAD_tiny_0.png": cv2.imencode(".png", np.full((1, 1, 3), 200, np.uint8))[
            1
        ].tobytes(),  # 1 x 1
        "BAD_blank_0.jpg": cv2.imencode(".jpg", np.zeros((200, 200, 3), np.uint8))[
            1
        ].tobytes(),  # crop all black
        "BAD_cut_0.jpg": whole.tobytes()[: sos + 20],  # header fine, image data cut off
    }
    for name, data in images.items():
        (src / name).write_bytes(data)
        shutil.copy(mat, (src / name).with_suffix(".mat"))
    shutil.copy(jpg, src / "BAD_nomat_0.jpg")  # an image without its .mat
    shutil.copy(mat, src / "BAD_noimage_0.mat")  # a .mat without its image
    m = sio.loadmat(mat)
    m["Shape_Para"][3] = np.nan
    sio.savemat(src / "BAD_nan_0.mat", {k: v for k, v in m.items() if not k.startswith("__")})
    shutil.copy(jpg, src / "BAD_nan_0.jpg")
    return src, {*images, "BAD_nomat_0.jpg", "BAD_noimage_0.mat", "BAD_nan_0.mat"}


def test_every_bad_file_is_named_and_every_good_row_is_byte_identical(
    build_world, good, tmp_path, capsys
):
    w = dict(build_world)
    src, bad = _bad_source(w, tmp_path)
    w["source_dir"] = src
    capsys.readouterr()
    r = B.run_build(
        w["model_params"], small_build_params(), SPLITS, build_paths(w, tmp_path / "ds")
    )
    out = capsys.readouterr().out
    q = {e["file"]: e for e in r.report.quarantine}
    assert set(q) == bad, sorted(q)
    assert "header claims 30000x30000" in q["BAD_bomb_0.jpg"]["error"]
    assert "too small" in q["BAD_tiny_0.png"]["error"] and "empty" in q["BAD_empty_0.jpg"]["error"]
    assert (
        "blank" in q["BAD_blank_0.jpg"]["error"]
        and "not a JPEG or PNG" in q["BAD_text_0.jpg"]["error"]
    )
    assert q["BAD_cut_0.jpg"]["field"] == "image"  # undecodable or a blank (gray-filled) crop
    assert q["BAD_nomat_0.jpg"]["field"] == "mat" and q["BAD_noimage_0.mat"]["field"] == "image"
    assert q["BAD_nan_0.mat"]["field"] == "Shape_Para"
    report = json.loads((tmp_path / "ds" / "report.json").read_text())
    assert {e["file"] for e in report["quarantine"]} == bad and report["counts"][
        "quarantined"
    ] == len(bad)
    assert r.manifest["quarantined"] == len(bad)
    # every good sample: the same rows, byte for byte, as a build of the good samples alone
    mine, ref = _rows(tmp_path / "ds"), _rows(good)
    assert sorted(mine) == sorted(ref) and len(ref) == 16
    for rid, row in ref.items():
        assert mine[rid] == row, rid
    # the console names the first few with their reasons, then counts the rest, and the counts line is printed once
    listed = [ln for ln in out.splitlines() if ln.startswith("  BAD_")]
    assert len(listed) == B.SHOW_QUARANTINED and all(": " in ln for ln in listed)
    assert f"and {len(bad) - B.SHOW_QUARANTINED} more" in out and "report.json" in out
    assert len(re.findall(r"^build: \{.*\} in \d+\.\d s$", out, re.M)) == 1


def test_exit_codes(build_world, good, tmp_path, capsys):
    """0: rows written (quarantine reported); 1: no row, or --strict with quarantine; 2: an error."""
    w = build_world
    params = build_params_file(w, tmp_path / "params.yaml")
    src, _ = _bad_source(w, tmp_path)
    assert main(_cli(w, params, src, tmp_path / "a")) == 0
    assert "quarantined" in capsys.readouterr().out
    assert (
        main(_cli(w, params, src, tmp_path / "a", "--strict")) == 1
    )  # the same data, judged strictly
    assert "--strict: 9 source file(s) quarantined" in capsys.readouterr().err
    assert (
        main(_cli(w, params, w["source_dir"], tmp_path / "b", "--strict")) == 0
    )  # nothing to quarantine
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    for f in ("BAD_empty_0.jpg", "BAD_empty_0.mat", "BAD_nomat_0.jpg"):
        shutil.copy(src / f, only_bad / f)
    assert main(_cli(w, params, only_bad, tmp_path / "c")) == 1
    assert "no valid row" in capsys.readouterr().err
    assert main(_cli(w, tmp_path / "missing.yaml", src, tmp_path / "d")) == 2
    err = capsys.readouterr().err
    assert "missing.yaml: params file not found" in err and not (tmp_path / "d").exists()


def test_wall_time_is_from_the_start_of_the_build(build_world, good, tmp_path, capsys):
    w = build_world
    dst = tmp_path / "ds"
    shutil.copytree(good, dst)
    plan = P.plan_build(w["model_params"], small_build_params(), SPLITS, build_paths(w, dst))
    res = [C.write_chunk(plan, k) for k in range(plan.n_chunks)]
    capsys.readouterr()
    B.finish_build(plan, res, tmp_path / "run.json", started=time.time() - 100)
    out = capsys.readouterr().out
    assert len(re.findall(r" in 10\d\.\d s$", out, re.M)) == 1, (
        out
    )  # once, though two reports are written
    assert (tmp_path / "run.json").read_bytes() == (dst / "report.json").read_bytes()


# ----------------------------------------------------------------------------- other people's folders


FOREIGN = {
    "manifest.json": b'{"mine": true}\n',
    "part-00000.parquet": b"PAR1 someone else's",
    "part-00042.h5": b"\x89HDF",
    "part-00042.json": b"{}",
}


@pytest.mark.parametrize(
    "names",
    [
        ["manifest.json"],
        ["part-00000.parquet"],
        ["part-00042.h5", "part-00042.json"],
        list(FOREIGN),
    ],
)
def test_a_folder_of_foreign_files_is_refused_untouched(build_world, tmp_path, capsys, names):
    w = build_world
    dst = tmp_path / "theirs"
    dst.mkdir()
    for n in [*names, "README.md"]:
        (dst / n).write_bytes(FOREIGN.get(n, b"# notes\n"))
    before = tree_bytes(dst)
    with pytest.raises(InputError, match="not written by the build stage") as e:
        B.run_build(w["model_params"], small_build_params(), SPLITS, build_paths(w, dst))
    assert e.value.path == str(dst)
    assert tree_bytes(dst) == {
        **before,
        outdir.LOCK: b"",
    }  # theirs untouched; only the (empty) lock file added
    params = build_params_file(w, tmp_path / "params.yaml")
    assert main(_cli(w, params, w["source_dir"], dst)) == 2
    assert "choose an empty folder" in capsys.readouterr().err
    assert tree_bytes(dst) == {**before, outdir.LOCK: b""}


def test_own_folder_reruns_and_an_emptied_one_rebuilds(build_world, good, tmp_path):
    """What DVC does: delete the outputs, then run; a rerun into the build's own folder resumes."""
    w = build_world
    dst = tmp_path / "ds"
    shutil.copytree(good, dst)
    B.run_build(w["model_params"], small_build_params(), SPLITS, build_paths(w, dst))
    assert tree_bytes(dst) == tree_bytes(good)
    shutil.rmtree(dst)
    B.run_build(w["model_params"], small_build_params(), SPLITS, build_paths(w, dst))
    assert tree_bytes(dst) == tree_bytes(good)
    assert outdir.STAMP in tree_bytes(dst)


_PAUSED_BUILD = """
import sys, time
from pathlib import Path
from densemark.config import load_params
from densemark.datasets.build import run_build
from densemark.datasets.plan import BuildPaths
flags = Path(sys.argv[7])
def hook(k, tmp):
    if k == 0:
        (flags / "ready").write_text("")
        t = time.monotonic()
        while not (flags / "go").exists() and time.monotonic() - t < 240:
            time.sleep(0.05)
p = load_params(sys.argv[1])
run_build(p.model, p.build, p.splits, BuildPaths(*sys.argv[2:7]), hook=hook)
"""


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 240) -> None:
    t = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the first build ended early: {proc.communicate()}")
        if time.monotonic() - t > limit:
            proc.kill()
            pytest.fail("the first build never reached its first shard")
        time.sleep(0.05)


def test_a_second_concurrent_build_is_refused(build_world, good, tmp_path, capsys):
    w = build_world
    params = build_params_file(w, tmp_path / "params.yaml")
    dst, flags = tmp_path / "ds", tmp_path / "flags"
    flags.mkdir()
    argv = [*build_argv(params, w, dst), str(flags)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_BUILD, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(
            flags / "ready", first
        )  # the first build holds the folder, paused in its first chunk
        with pytest.raises(InputError, match="another densemark process is writing this folder"):
            B.run_build(w["model_params"], small_build_params(), SPLITS, build_paths(w, dst))
        assert main(_cli(w, params, w["source_dir"], dst)) == 2
        assert "another densemark process is writing" in capsys.readouterr().err
    finally:
        (flags / "go").write_text("")
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert tree_bytes(dst) == tree_bytes(good)  # the first build's result, not a mix


def test_the_lock_is_reentrant_and_a_killed_holder_leaves_none(tmp_path):
    d = tmp_path / "d"
    with outdir.locked(d, "x"), outdir.locked(d, "x"):  # the same process may nest
        pass
    script = "import os, signal, sys\nfrom densemark.core import outdir\nwith outdir.locked(sys.argv[1], 'x'):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    r = subprocess.run(
        [sys.executable, "-c", script, str(d)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert r.returncode == -9 and (d / outdir.LOCK).exists()
    with outdir.locked(d, "x"):  # not stale: the kernel released it with its process
        import fcntl

        fd = os.open(d / outdir.LOCK, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # while held, another open file cannot take it
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------- write errors


@pytest.mark.parametrize(
    "code, advice",
    [
        (errno.ENOSPC, "free space and rerun"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_write_errors_are_one_line_and_a_rerun_is_identical(
    build_world, good, tmp_path, capsys, monkeypatch, code, advice
):
    """Simulated at the shard write layer (the CLI runs in this process, so the error reaches its
    ``main`` exactly as a real one would); the real read-only case is the next test."""
    from densemark.datasets import shards

    w = build_world
    params = build_params_file(w, tmp_path / "params.yaml")
    dst = tmp_path / "ds"
    real = shards.write_parquet
    calls = []

    def failing(path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(code, os.strerror(code), str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(shards, "write_parquet", failing)
    assert main(_cli(w, params, w["source_dir"], dst)) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and err.startswith("densemark: error: ") and str(calls[1]) in err
    )
    assert advice in err and errno.errorcode[code] in err
    monkeypatch.setattr(shards, "write_parquet", real)
    assert (
        main(_cli(w, params, w["source_dir"], dst)) == 0
    )  # after the space is freed: the same dataset
    assert tree_bytes(dst) == tree_bytes(good)


@pytest.fixture
def read_only_dir(tmp_path):
    """A real read-only folder: a read-only tmpfs mount (root ignores file modes, not a read-only
    file system); skipped where mounting is not allowed."""
    d = tmp_path / "ro"
    d.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)


def test_read_only_output_folder_one_line_no_traceback(build_world, tmp_path, read_only_dir):
    w = build_world
    params = build_params_file(w, tmp_path / "params.yaml")
    cmd = [
        sys.executable,
        "-m",
        "densemark",
        *_cli(w, params, w["source_dir"], read_only_dir / "ds"),
    ]
    r = subprocess.run(
        cmd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert str(read_only_dir / "ds") in r.stderr and "read-only" in r.stderr and "EROFS" in r.stderr
