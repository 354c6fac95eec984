"""Prefect flows over the stage functions, against one real ``prefect server`` for the module.

The server runs in a subprocess on a free 127.0.0.1 port with its own PREFECT_HOME under tmp;
in-process flows reach it through temporary settings, the served deployment through env.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from densemark.flows import keys
from tests.factories import tree_sha256
from tests.prefect_support import prefect_env, prefect_server, stop

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
model: {source: embedded, dir: data/model, cache_dir: data/cache, uv_res: 128}
procedural: {grid: 81, n_shape: 10, n_exp: 5}
synthetic: {n_train: 7, n_test: 2, image_size: 160, scale_min: 0.00045, scale_max: 0.0005}
sample: {target_count: 120, symmetric: true}
build: {res: 96, chunk_size: 3, formats: [parquet, hdf5], workers: 1, batch: 4}
splits: {seed: 0, val: 0.25, test: 0.25}
card: {n_samples: 4, grid_cols: 2}
flows: {n_workers: 2, processes: false, retries: 0}
"""


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """A real ``prefect server start`` (cleaned up afterwards); yields (api url, PREFECT_HOME)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_LOCAL_STORAGE_PATH,
        temporary_settings,
    )

    home = tmp_path_factory.mktemp("prefect_home")
    with (
        prefect_server(home) as url,
        temporary_settings(
            updates={
                PREFECT_API_URL: url,
                PREFECT_HOME: home,
                PREFECT_LOCAL_STORAGE_PATH: home / "storage",
            }
        ),
    ):
        yield url, home
        # send the logs still queued for this server before it stops (else Prefect's log
        # worker reports "Error logging to API" once the server is gone)
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()


@pytest.fixture(scope="module")
def world(prefect_api, tmp_path_factory):
    """A tiny pipeline root, prepared by the ``prepare`` flow (run twice: the second is all cached)."""
    from densemark.flows.prepare import prepare_flow

    root = tmp_path_factory.mktemp("root")
    (root / "params.yaml").write_text(TINY)
    first = prepare_flow(params_path=str(root / "params.yaml"))
    (root / "landmarks").mkdir()
    shutil.copy(
        root / "data/landmarks/sampled.json", root / "landmarks/embedded-520.json"
    )  # the chosen set
    second = prepare_flow(params_path=str(root / "params.yaml"))
    return root, first, second


@pytest.fixture(scope="module")
def built(world):
    """The tiny root with its dataset built by the build flow (all chunks cached when a test
    before has built it already), so the card tests run on their own."""
    from densemark.flows.build import build_flow

    root, _, _ = world
    build_flow(params_path=str(root / "params.yaml"))
    assert (root / "data/dataset/manifest.json").is_file()
    return root


# the repository's params with fewer samples and epochs: every dvc.yaml stage, same code paths
SMALL = {
    "synthetic": {"n_train": 6, "n_test": 4},
    "sample": {"relax": {"iterations": 4}},
    "card": {"n_samples": 4},
    "train": {"epochs": 1, "batch_size": 4, "workers": 0},
    "build": {"workers": 1},
    "flows": {"n_workers": 2, "processes": False, "retries": 0},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def _small_root(d: Path) -> Path:
    d.mkdir(parents=True)
    shutil.copytree(ROOT / "landmarks", d / "landmarks")
    (d / "params.yaml").write_text(
        yaml.safe_dump(_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SMALL))
    )
    return d


def _dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.fixture(scope="module")
def pipeline_run(prefect_api, tmp_path_factory):
    """The pipeline flow on the small configuration: (root, final state of its run)."""
    from densemark.flows.deploy import pipeline_flow

    root = _small_root(tmp_path_factory.mktemp("pipeline") / "root")
    return root, pipeline_flow(params_path=str(root / "params.yaml"), return_state=True)


def _artifacts(flow_run_id) -> dict[str, dict]:
    """The artifacts of a flow run by key, read back through the server's REST API."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {
        "artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}},
        "limit": 200,
        "offset": 0,
        "sort": "KEY_ASC",
    }
    r = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=30)
    r.raise_for_status()
    return {a["key"]: a for a in r.json()}


# ----------------------------------------------------------------------------- cache keys (no server)


def test_cache_key_follows_input_bytes_params_and_outputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.txt").write_text("one")
    base = {"inputs": {"src": str(d)}, "outputs": {"out": "o"}, "p": {"x": 1}}
    k0 = keys.stage_key("t", base, ("core",))
    assert keys.stage_key("t", json.loads(json.dumps(base)), ("core",)) == k0
    os.utime(d / "a.txt", (1, 1))  # mtime alone does not change it
    assert keys.stage_key("t", base, ("core",)) == k0
    (d / ".a.txt.123.tmp").write_text("junk")  # nor a temp file of an atomic write
    assert keys.stage_key("t", base, ("core",)) == k0
    (d / "a.txt").write_text("two")
    k1 = keys.stage_key("t", base, ("core",))
    assert k1 != k0
    assert keys.stage_key("t", {**base, "p": {"x": 2}}, ("core",)) != k1
    assert keys.stage_key("t", {**base, "outputs": {"out": "elsewhere"}}, ("core",)) != k1
    assert keys.stage_key("u", base, ("core",)) != k1
    assert keys.stage_key("t", base, ("core", "faces")) != k1
    (d / "b.txt").write_text("")
    assert keys.stage_key("t", base, ("core",)) != k1


# ----------------------------------------------------------------------------- flows


def test_prepare_flow_runs_the_cli_stages_and_caches(world, tmp_path):
    from densemark.cli import main

    root, first, second = world
    assert {v["state"] for v in first.values()} == {"Completed"}
    assert set(first) == {"model", "template", "synth_300wlp", "synth_aflw2000", "posmap", "sample"}
    assert {k: v["state"] for k, v in second.items() if k != "compare"} == {
        k: "Cached" for k in first
    }
    assert second["compare"]["state"] == "Completed"
    assert "identical ids" in Path(second["compare"]["result"]["outputs"]["markdown"]).read_text()
    # every stage task writes what its dvc.yaml stage writes, metrics included
    assert (
        json.loads((root / "metrics/sample.json").read_text())["final"]
        == first["sample"]["result"]["metrics"]["final"]
    )
    # the same bytes as the CLI stages
    cli = tmp_path / "cli"
    cli.mkdir()
    (cli / "params.yaml").write_text(TINY)
    cwd = os.getcwd()
    os.chdir(cli)
    try:
        for argv in (["model", "--out", "data/model"],
                     ["template", "--model-dir", "data/model", "--out", "data/template", "--report", "reports/template.json"],
                     ["synth-300wlp", "--model-dir", "data/model", "--out", "data/sources/300wlp"],
                     ["sample", "--template", "data/template", "--out", "data/landmarks/sampled.json", "--report", "reports/sample.json"]):  # fmt: skip
            assert main(["--params", "params.yaml", *argv]) == 0
    finally:
        os.chdir(cwd)
    for sub in ("data/model", "data/template", "data/sources/300wlp", "data/landmarks"):
        assert tree_sha256(cli / sub) == tree_sha256(root / sub), sub
    assert (cli / "reports/template.json").read_bytes() == (
        root / "reports/template.json"
    ).read_bytes()


def test_prepare_reruns_what_changed(world):
    from densemark.flows.prepare import prepare_flow

    root, _, _ = world
    shutil.rmtree(
        root / "data/sources/aflw2000"
    )  # a lost output is rebuilt whatever the cache says
    r = prepare_flow(
        params_path=str(root / "params.yaml"), overrides={"sample": {"target_count": 110}}
    )
    states = {k: v["state"] for k, v in r.items()}
    assert states["synth_aflw2000"] == "Completed" and states["sample"] == "Completed"
    assert states["model"] == states["template"] == states["synth_300wlp"] == "Cached"
    assert r["sample"]["result"]["metrics"]["final"] == 110
    prepare_flow(
        params_path=str(root / "params.yaml")
    )  # back to the params file's set for the tests below
    assert (
        json.loads((root / "data/landmarks/sampled.json").read_text())["ids"]
        == json.loads((root / "landmarks/embedded-520.json").read_text())["ids"]
    )


def test_build_flow_on_dask_is_byte_identical_to_the_serial_build(world):
    from densemark.config import load_params
    from densemark.datasets.build import run_build
    from densemark.datasets.plan import BuildPaths
    from densemark.flows.build import build_flow

    root, _, _ = world
    p = load_params(root / "params.yaml")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        paths = BuildPaths(model_dir="data/model", template_dir="data/template", set_path="landmarks/embedded-520.json",
                           source_dir="data/sources/300wlp", out_dir="data/serial")  # fmt: skip
        serial = run_build(p.model, p.build, p.splits, paths)
    finally:
        os.chdir(cwd)
    from distributed import LocalCluster

    # an existing cluster, reached through flows.address; two chunks per task (a group's
    # chunks are written as they would be one per task)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        overrides = {"flows": {"address": cluster.scheduler_address, "chunks_per_task": 2}}
        state = build_flow(
            params_path=str(root / "params.yaml"), overrides=overrides, return_state=True
        )
    res = state.result()
    assert res["manifest_sha256"] == serial.manifest_sha256
    assert (
        serial.manifest["rows"] > 0 and len(serial.manifest["files"]) >= 4
    )  # several chunks, both formats
    assert tree_sha256(root / "data/dataset") == tree_sha256(root / "data/serial")
    arts = _artifacts(state.state_details.flow_run_id)
    assert {"densemark-build", "densemark-build-counts", "densemark-quarantine"} <= set(arts)
    rows = {
        (r["group"], r["value"]): r["rows"]
        for r in json.loads(arts["densemark-build-counts"]["data"])
    }
    assert rows[("split", "train")] == serial.manifest["counts"]["split"]["train"]
    # rerun on a LocalCluster of the params (flows.n_workers): every chunk is found done on disk
    before = tree_sha256(root / "data/dataset")
    assert (
        build_flow(params_path=str(root / "params.yaml"))["manifest_sha256"]
        == serial.manifest_sha256
    )
    assert tree_sha256(root / "data/dataset") == before
    # a lost shard: that chunk runs again (the others are found done), the folder is as before
    sorted((root / "data/dataset").glob("hdf5/*.h5"))[1].unlink()
    assert (
        build_flow(params_path=str(root / "params.yaml"))["manifest_sha256"]
        == serial.manifest_sha256
    )
    assert tree_sha256(root / "data/dataset") == before


def test_card_flow_publishes_the_card(built):
    from densemark.flows.card import card_flow

    root = built
    state = card_flow(params_path=str(root / "params.yaml"), return_state=True)
    res = state.result()
    assert Path(res["outputs"]["card"]) == root / "data/card/README.md"
    assert (
        res["metrics"]["rows"]
        == json.loads((root / "data/dataset/manifest.json").read_text())["rows"]
    )
    arts = _artifacts(state.state_details.flow_run_id)
    assert "## Composition" in arts["densemark-card"]["data"]
    assert (
        arts["densemark-card"]["data"].count("](data:image/png;base64,") == 3
    )  # the figures travel with the artifact
    assert card_flow(params_path=str(root / "params.yaml"))["state"] == "Cached"


@pytest.mark.slow
def test_serve_runs_a_deployment_through_the_api(built, prefect_api):
    """``densemark serve`` in a subprocess; a run of its card deployment started through the API."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    url, home = prefect_api
    root = built
    shutil.rmtree(root / "data/card", ignore_errors=True)
    serve_log = open(home / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "densemark", "--params", str(root / "params.yaml"), "serve", "--flows", "card"],
        env=prefect_env(home, url), stdout=serve_log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root,
    )  # fmt: skip
    try:
        t0 = time.monotonic()
        with get_client(sync_client=True) as client:
            while True:
                try:
                    dep = client.read_deployment_by_name("densemark-card/densemark-card")
                    break
                except Exception:  # noqa: BLE001 - not registered yet
                    if proc.poll() is not None or time.monotonic() - t0 > 90:
                        raise RuntimeError(
                            f"serve did not register:\n{(home / 'serve.log').read_text()[-3000:]}"
                        ) from None
                    time.sleep(1)
            assert dep.parameters["params_path"] == str((root / "params.yaml").resolve())
            assert dep.entrypoint == "densemark.flows.card.card_flow" and "densemark" in dep.tags
            assert "``" not in (dep.description or "")
            # the run form: each params section typed, its fields described
            props = dep.parameter_openapi_schema["definitions"]["CardParams"]["properties"]
            assert props["n_samples"]["default"] == 12 and props["n_samples"]["description"]
            run = run_deployment(
                "densemark-card/densemark-card",
                parameters={"overrides": {"card": {"n_samples": 2}}},
                timeout=240,
            )
            assert run.state is not None and run.state.is_completed(), (
                run.state,
                (home / "serve.log").read_text()[-3000:],
            )
            arts = _artifacts(run.id)
            assert "densemark-card" in arts and "densemark-card-counts" in arts
            assert json.loads((root / "data/card/card.json").read_text())["grid"].__len__() == 2
            final = client.read_flow_run(run.id)
            assert final.state.is_completed() and final.parameters["overrides"] == {
                "card": {"n_samples": 2}
            }
    finally:
        stop(proc)
        serve_log.close()


def test_pipeline_flow_stages_are_the_dvc_stages():
    from densemark.flows.deploy import GROUPS
    from densemark.pipeline import STAGES

    assert [s for _, group in GROUPS for s in group] == list(_dvc_stages()) == list(STAGES)


@pytest.mark.slow
def test_pipeline_flow_is_dvc_repro(pipeline_run, tmp_path):
    """Every dvc.yaml stage a task named after it, the results on the top-level run, the same
    bytes as the stages' dvc.yaml commands, and a second run all cached."""
    import shlex

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from densemark.cli import main
    from densemark.flows.deploy import pipeline_flow

    root, state = pipeline_run
    assert state.is_completed(), state
    res = state.result()
    stages = _dvc_stages()
    assert list(res["stages"]) == list(stages) and set(res["stages"].values()) == {"Completed"}
    top = state.state_details.flow_run_id
    ids = [top, *res["runs"].values()]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    assert set(stages) <= {t.name for t in runs}
    arts = _artifacts(top)
    assert {
        "densemark-stages",
        "densemark-metrics",
        "densemark-results",
        "densemark-card",
        "densemark-samples",
        "densemark-subflows",
    } <= set(arts)
    rows = json.loads(arts["densemark-stages"]["data"])
    assert [r["stage"] for r in rows] == list(stages) and {r["state"] for r in rows} == {
        "completed"
    }
    assert all(r["seconds"] > 0 for r in rows)
    nme = json.loads((root / "metrics/evaluate.json").read_text())["aflw2000"]["nme68_mean"]
    assert {"stage": "evaluate", "metric": "aflw2000.nme68_mean", "value": nme} in json.loads(
        arts["densemark-metrics"]["data"]
    )
    assert (
        "data:image/png;base64," in arts["densemark-card"]["data"]
        and "](pose.png)" not in arts["densemark-card"]["data"]
    )
    assert (
        "data:image/png;base64," in arts["densemark-results"]["data"]
        and "NME" in arts["densemark-results"]["data"]
    )
    assert all(
        f"/runs/flow-run/{rid}" in arts["densemark-subflows"]["data"]
        for rid in res["runs"].values()
    )
    # the same bytes as dvc.yaml's commands
    cli = _small_root(tmp_path / "cli")
    cwd = os.getcwd()
    os.chdir(cli)
    try:
        for name, st in stages.items():
            assert main(["--params", "params.yaml", *shlex.split(st["cmd"])[1:]]) == 0, name
    finally:
        os.chdir(cwd)
    outs = [
        o if isinstance(o, str) else next(iter(o))
        for st in stages.values()
        for key in ("outs", "metrics", "plots")
        for o in st.get(key, [])
    ]
    for o in outs:
        a, b = root / o, cli / o
        assert (
            (tree_sha256(a) == tree_sha256(b)) if a.is_dir() else (a.read_bytes() == b.read_bytes())
        ), o
    # a second run: every stage from the cache
    again = pipeline_flow(params_path=str(root / "params.yaml"))
    assert set(again["stages"].values()) == {"Cached"}


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _render(url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The page as headless Chromium renders it (its DOM), or a screenshot of it."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
            "--window-size=1280,900", "--hide-scrollbars"]  # fmt: skip
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    r = subprocess.run([*args, url], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _text(html: str) -> str:
    import re

    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs Debian's chromium (apt-get install chromium; CI: scripts/setup-ci-gui.sh)",
)
def test_ui_shows_the_deployments_the_pipeline_run_and_its_artifacts(
    pipeline_run, prefect_api, tmp_path
):
    """The Prefect UI in headless Chromium. DENSEMARK_UI_SCREENSHOTS=DIR also saves screenshots there."""
    from densemark.flows.deploy import deployments

    url, _ = prefect_api
    ui = url.removesuffix("/api")
    root, state = pipeline_run
    for d in deployments(params_path=root / "params.yaml"):
        d.apply()
    profile = tmp_path / "chromium"
    text = _text(_render(f"{ui}/deployments", profile))
    for name in ("prepare", "build", "card", "train", "pipeline"):
        assert f"densemark-{name}" in text, text[-2000:]
    rid = state.state_details.flow_run_id
    text = _text(_render(f"{ui}/runs/flow-run/{rid}", profile))
    assert "Completed" in text and "densemark-pipeline" in text and "Artifacts" in text, text[
        -2000:
    ]
    arts = _artifacts(rid)
    pages = {
        key: _render(f"{ui}/artifacts/artifact/{arts[key]['id']}", profile)
        for key in ("densemark-stages", "densemark-card", "densemark-results", "densemark-subflows")
    }
    assert "synth_300wlp" in _text(pages["densemark-stages"]) and "evaluate" in _text(
        pages["densemark-stages"]
    )
    assert (
        "Composition" in _text(pages["densemark-card"])
        and 'src="data:image/png;base64,' in pages["densemark-card"]
    )
    assert (
        "CED curve" in _text(pages["densemark-results"])
        and 'src="data:image/png;base64,' in pages["densemark-results"]
    )
    assert "densemark-prepare" in _text(pages["densemark-subflows"])
    shots = os.environ.get("DENSEMARK_UI_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        _render(f"{ui}/deployments", profile, Path(shots) / "prefect-deployments.png")
        _render(f"{ui}/runs/flow-run/{rid}", profile, Path(shots) / "prefect-run.png")
        for key in ("densemark-stages", "densemark-results", "densemark-card"):
            _render(
                f"{ui}/artifacts/artifact/{arts[key]['id']}",
                profile,
                Path(shots) / f"prefect-{key.removeprefix('densemark-')}.png",
            )


def test_bad_input_is_not_retried_other_failures_are():
    from prefect.states import Failed

    from densemark.core.errors import InputError
    from densemark.flows.common import retry_transient

    assert retry_transient(None, None, Failed(data=OSError("disk hiccup"))) is True
    assert (
        retry_transient(None, None, Failed(data=InputError("a.mat", "Pose_Para", "bad"))) is False
    )


def test_overrides_parse_and_merge(tmp_path):
    from densemark.cli.flows import parse_overrides
    from densemark.config import load_params

    o = parse_overrides(
        ["flows.n_workers=4", "flows.address=tcp://h:8786", "sample.seeds=[0, 1, 30]"]
    )
    assert o == {
        "flows": {"n_workers": 4, "address": "tcp://h:8786"},
        "sample": {"seeds": [0, 1, 30]},
    }
    (tmp_path / "p.yaml").write_text("flows: {retries: 5}\n")
    p = load_params(tmp_path / "p.yaml", o)
    assert (p.flows.n_workers, p.flows.retries, p.flows.address, p.sample.seeds) == (
        4,
        5,
        "tcp://h:8786",
        [0, 1, 30],
    )
    with pytest.raises(SystemExit):
        parse_overrides(["n_workers=4"])


def test_typed_overrides_keep_only_the_given_keys_and_name_a_bad_one():
    from pydantic import ValidationError

    from densemark.flows.deploy import pipeline_flow
    from densemark.flows.overrides import Sections, as_dict

    assert as_dict({"train": {"epochs": 2}, "sample": {"relax": {"iterations": 4}}}) == {
        "train": {"epochs": 2},
        "sample": {"relax": {"iterations": 4}},
    }
    assert as_dict(Sections()) is None and as_dict(None) is None
    with pytest.raises(ValidationError, match=r"train\.epochs"):
        as_dict({"train": {"epochs": 0}})
    with pytest.raises(ValidationError, match="epochz"):
        as_dict({"train": {"epochz": 3}})
    # the run form: every section's fields with their descriptions and defaults
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(pipeline_flow).model_dump()
    train = schema["definitions"]["TrainParams"]["properties"]
    assert train["epochs"]["default"] == 60 and train["epochs"]["description"]
    assert all(
        f.get("description")
        for d in schema["definitions"].values()
        for f in d["properties"].values()
    )
