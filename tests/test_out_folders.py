"""Every stage holds its output folders: one writer at a time, never someone else's files.

The registry's :meth:`Stage.run` (what the CLI and the flows call) claims each output folder
(:func:`densemark.core.outdir.claimed`), so this holds for every stage without each one
repeating it; the ``model`` stage on a small procedural grid stands in for all of them here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from densemark.config import Params
from densemark.core.errors import InputError
from densemark.core.outdir import LOCK, STAMP
from densemark.pipeline import STAGES
from tests.factories import GRID

ROOT = Path(__file__).resolve().parents[1]


def _params(folder: Path) -> Params:
    return Params.model_validate(
        {
            "model": {"dir": str(folder), "cache_dir": str(folder.parent / "cache")},
            "procedural": {"grid": GRID},
        }
    )


def test_every_stage_with_an_output_folder_claims_it():
    folders = {
        name: [s.key for s in st.of("out") if not Path(s.path).suffix]
        for name, st in STAGES.items()
    }
    assert (
        folders["model"] == ["out"] and folders["build"] == ["out"] and folders["card"] == ["out"]
    )
    st = STAGES["build"]
    got = st.out_folders({s.key: s.path for s in st.slots})
    assert got == [(Path(st.slot("out").path), ())]
    train = STAGES["train"]  # models/ also holds the export's ONNX file: train owns its two files
    assert train.out_folders({s.key: s.path for s in train.slots}) == [
        (Path("models"), ("model.pt", "checkpoint.pt"))
    ]


def test_a_folder_of_foreign_files_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "BFM.mat").write_bytes(b"someone else's")
    with pytest.raises(InputError, match="not written by the model stage"):
        STAGES["model"].run(_params(out), {"out": out})
    assert (out / "BFM.mat").read_bytes() == b"someone else's" and not (out / STAMP).exists()


def test_a_rerun_into_its_own_folder_works_and_another_stage_is_refused(tmp_path):
    out = tmp_path / "model"
    STAGES["model"].run(_params(out), {"out": out})
    assert (out / STAMP).is_file() and (out / LOCK).is_file()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    STAGES["model"].run(_params(out), {"out": out})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(InputError, match="the model stage's"):
        STAGES["template"].run(_params(out), {"model_dir": out, "out": out})


def test_a_shared_folder_refuses_only_the_files_the_stage_writes(tmp_path):
    from densemark.core.outdir import claimed

    d = tmp_path / "models"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"the export's")
    with claimed(d, "train", ("model.pt", "checkpoint.pt")):
        pass
    assert (d / "model.onnx").read_bytes() == b"the export's" and (d / STAMP).is_file()
    (d / STAMP).unlink()
    (d / "model.pt").write_bytes(b"someone else's")
    with pytest.raises(InputError, match=r"model.pt; no \.densemark-stage\.json"):
        with claimed(d, "train", ("model.pt", "checkpoint.pt")):
            pass


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path):
    out = tmp_path / "model"
    code = (
        "import sys, time\nfrom densemark.core.outdir import locked\n"
        "with locked(sys.argv[1], 'model'):\n    print('held', flush=True)\n    time.sleep(60)\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match="another densemark process is writing this folder"):
            STAGES["model"].run(_params(out), {"out": out})
    finally:
        p.kill()
        p.wait()
    STAGES["model"].run(_params(out), {"out": out})  # the kernel dropped the killed holder's lock
    assert (out / "BFM.mat").is_file()
