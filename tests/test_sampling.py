"""The dense landmark sampler: Delaunay rounds, FPS fill/thin, symmetry, comparison, stages, CLI."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra

from densemark.cli import main
from densemark.config import load_params
from densemark.core.errors import ConfigError, InputError
from densemark.faces.template import save_template
from densemark.sampling.compare import compare_sets, geodesic_nn, report_markdown, voronoi
from densemark.sampling.delaunay import centroids, delaunay_sample
from densemark.sampling.fps import distance_to, edge_graph, farthest_point_sampling
from densemark.sampling.landmark_set import LandmarkSet
from densemark.sampling.params import RelaxParams, SampleParams
from densemark.sampling.sampler import rim_ids, sample_set
from densemark.sampling.stages import run_compare, run_import_seed, run_sample
from densemark.sampling.symmetry import template_mirror
from tests.factories import disc_template

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tpl():
    return disc_template(64)


# --- synthetic template ---------------------------------------------------------------------


def test_disc_template_mirror(tpl):
    tm = template_mirror(tpl)
    assert tm.exact.all() and np.array_equal(tm.ids[tm.ids], np.arange(tpl.n_vertices))
    assert np.allclose(tm.normal, [1, 0, 0]) and abs(tm.offset) < 1e-9
    assert tm.midline.sum() > 0 and np.array_equal(tm.ids[tm.midline], np.flatnonzero(tm.midline))


def test_centroids_match_naive(tpl):
    from scipy.spatial import Delaunay

    ids = tpl.kpt_ids[list(range(17)) + [30]]
    new, n_tri = centroids(tpl, ids, "uv")
    ref = []
    for tri in Delaunay(tpl.pixel_uv[ids].astype(float)).simplices:
        c = tpl.pixel_uv[ids[tri]].mean(0)
        u, v = int(np.floor(c[0] + 0.5)), int(np.floor(c[1] + 0.5))
        if tpl.id_map[v, u] >= 0:
            ref.append(tpl.id_map[v, u])
    assert n_tri >= len(new) and sorted(new.tolist()) == sorted(ref)


@pytest.mark.parametrize("space", ["uv", "frontal", "geodesic"])
def test_delaunay_rounds(tpl, space):
    seeds = tpl.kpt_ids[list(range(17)) + [30]]
    r = delaunay_sample(tpl, seeds, 3, space)
    assert len(r.counts) == 4 and r.counts[0] == 18 and r.counts[-1] == len(r.ids)
    assert all(b > a for a, b in zip(r.counts, r.counts[1:], strict=False))
    assert len(np.unique(r.ids)) == len(r.ids) and np.array_equal(r.ids[:18], seeds)
    r2 = delaunay_sample(tpl, seeds, 3, space)
    assert np.array_equal(r.ids, r2.ids)


def test_delaunay_symmetric_rounds_exact(tpl):
    tm = template_mirror(tpl)
    r = delaunay_sample(tpl, tpl.kpt_ids[list(range(17)) + [30]], 3, "uv", symmetric=True)
    assert np.isin(tm.ids[r.ids], r.ids).all()


def test_bad_seeds(tpl):
    with pytest.raises(InputError, match="triangulate"):
        delaunay_sample(tpl, tpl.kpt_ids[[0, 0, 1]], 1)
    with pytest.raises(InputError, match="range"):
        delaunay_sample(tpl, [0, 1, tpl.n_vertices], 1)


def test_distance_and_fps_match_naive(tpl):
    g = edge_graph(tpl)
    full = dijkstra(g, directed=False)  # (V, V) on the small template
    src = np.array([5, 400, 1700])
    assert np.allclose(distance_to(tpl, src), full[src].min(0))
    chosen = tpl.kpt_ids[[0, 8, 16]]
    got = farthest_point_sampling(tpl, chosen, np.arange(tpl.n_vertices), 40, seed=0)
    prio = np.random.default_rng(0).permutation(tpl.n_vertices)
    ref = list(chosen)
    for _ in range(37):
        d = full[ref].min(0)
        d[ref] = -1
        ties = np.flatnonzero(d == d.max())
        ref.append(int(ties[np.argmin(prio[ties])]))
    assert got.tolist() == ref


def test_fps_symmetric_and_parity(tpl):
    tm = template_mirror(tpl)
    chosen = np.array([tm.ids[10], 10])
    for target in (31, 32):
        out = farthest_point_sampling(
            tpl, chosen, np.arange(tpl.n_vertices), target, symmetric=True
        )
        assert len(out) == target and len(np.unique(out)) == target
        assert np.isin(tm.ids[out], out).all()
    with pytest.raises(InputError, match="target_count"):
        farthest_point_sampling(tpl, chosen, [1, 2], 10)


def test_geodesic_nn_matches_naive(tpl):
    ids = np.array([3, 50, 700, 1200, 1900, 2300])
    full = dijkstra(edge_graph(tpl), directed=False, indices=ids)[:, ids]
    np.fill_diagonal(full, np.inf)
    assert np.allclose(geodesic_nn(tpl, ids), full.min(1))
    d, owner = voronoi(tpl, ids)
    assert np.array_equal(owner[ids], np.arange(6)) and (d[ids] == 0).all()


def test_sample_set_modes(tpl):
    base, rep = sample_set(tpl, SampleParams(target_count=None, symmetric=False))
    assert rep["counts"][0] == 18 and np.array_equal(base.kpt68_ids, tpl.kpt_ids)
    for t, sym in ((150, False), (150, True), (151, True), (70, False), (110, True)):
        s, rep = sample_set(tpl, SampleParams(target_count=t, symmetric=sym))
        assert len(s) == t, (t, sym)
        assert np.array_equal(s.kpt68_ids, tpl.kpt_ids)  # forced keypoints survive fill and thin
        if sym:
            assert s.mirror_exact and (s.mirror_residual == 0).all()
            assert np.array_equal(s.mirror_perm[s.mirror_perm], np.arange(t))
    s, _ = sample_set(tpl, SampleParams(include_kpt68=False, target_count=30, symmetric=False))
    assert len(s) == 30
    with pytest.raises(InputError, match="forced"):
        sample_set(tpl, SampleParams(target_count=20, symmetric=False))


def test_boundary_seeds_on_rim(tpl):
    s, rep = sample_set(tpl, SampleParams(boundary_seeds=6, target_count=None, symmetric=False))
    seeds = np.array(s.provenance["sampler"]["seed_ids"])
    assert rep["seeds"] == 24 and np.isin(seeds[18:], rim_ids(tpl)).all()


def test_deterministic_bytes(tmp_path, tpl):
    p = SampleParams(target_count=120, seed=3, symmetric=False)
    a = run_sample(tpl, p, tmp_path / "a.json").outputs["set"]
    b = run_sample(tpl, p, tmp_path / "b.json").outputs["set"]
    assert a.read_bytes() == b.read_bytes()
    s = LandmarkSet.load(a, tpl)
    assert s.provenance["sampler"]["params"]["target_count"] == 120
    assert s.provenance["raw_ids"] is not None


def test_params_validation(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("sample:\n  rounds: 99\n")
    with pytest.raises(ConfigError, match="sample.rounds"):
        load_params(f)
    f.write_text("sample:\n  bogus: 1\n")
    with pytest.raises(ConfigError, match="sample.bogus"):
        load_params(f)
    f.write_text("sample:\n  space: sphere\n")
    with pytest.raises(ConfigError, match="sample.space"):
        load_params(f)
    assert SampleParams().seeds == list(range(17)) + [30]


def test_compare_and_stages(tmp_path, tpl):
    pa = SampleParams(target_count=150, name="a", symmetric=False)
    pb = SampleParams(target_count=150, symmetric=True, name="b")
    ra = run_sample(tpl, pa, tmp_path / "a.json", tmp_path / "a_rep.json", tmp_path / "a.png")
    run_sample(tpl, pb, tmp_path / "b.json")
    assert (tmp_path / "a.png").stat().st_size > 1000 and ra.report["stats"]["count"] == 150
    res = run_compare(
        tmp_path / "a.json", tmp_path / "b.json", tpl, tmp_path / "c.md", tmp_path / "c.png"
    )
    rep = res.report
    assert rep["b"]["symmetry"]["exact"] and rep["b"]["symmetry"]["residual"]["max"] == 0
    assert 0 < rep["a"]["coverage"]["mean"] <= rep["a"]["coverage"]["max"] < np.inf
    assert rep["overlap"]["same_ids"] >= 68
    assert "coverage" in (tmp_path / "c.md").read_text()
    self_rep = compare_sets(tpl, *(LandmarkSet.load(tmp_path / "a.json"),) * 2)
    assert self_rep["a_to_b"]["max"] == 0
    assert report_markdown(self_rep).startswith("# Landmark sets")


def test_cli(tmp_path, capsys):
    tdir = save_template(
        disc_template(256, rx=0.1, ry=0.11), tmp_path / "tpl"
    )  # files imply res 256
    params = tmp_path / "params.yaml"
    params.write_text("sample:\n  target_count: 100\n  symmetric: false\n  name: cli\n")
    out = tmp_path / "s.json"
    assert (
        main(["--params", str(params), "sample", "--template", str(tdir), "--out", str(out)]) == 0
    )
    assert len(LandmarkSet.load(out)) == 100
    assert main(["landmarks", "compare", str(out), str(out), "--template", str(tdir)]) == 0
    assert "Landmark sets" in capsys.readouterr().out
    assert (
        main(
            ["landmarks", "compare", str(out), str(tmp_path / "nope.json"), "--template", str(tdir)]
        )
        == 2
    )
    assert "nope.json" in capsys.readouterr().err


# --- real template --------------------------------------------------------------------------


@pytest.mark.real
def test_real_default_rounds(real_template):
    t0 = time.perf_counter()
    s, rep = sample_set(
        real_template,
        SampleParams(symmetric=False, target_count=None, relax=RelaxParams(iterations=0)),
    )
    assert time.perf_counter() - t0 < 5
    assert rep["counts"] == [18, 40, 104, 293]
    assert np.array_equal(s.kpt68_ids, real_template.kpt_ids)


@pytest.mark.real
@pytest.mark.parametrize("sym", [False, True])
def test_real_520(real_dir, real_template, tmp_path, sym):
    t0 = time.perf_counter()
    p = SampleParams(
        target_count=520, symmetric=sym, relax=RelaxParams(iterations=0)
    )  # rounds + FPS fill
    res = run_sample(real_template, p, tmp_path / "s.json")
    assert time.perf_counter() - t0 < 10
    s = LandmarkSet.load(res.outputs["set"], real_template)
    assert len(s) == 520 and s.mirror_exact == sym
    run_import_seed(real_dir / "seed", real_template, tmp_path / "paper.json")
    rep = run_compare(tmp_path / "s.json", tmp_path / "paper.json", real_template).report
    # FPS fill gives at least the paper's worst-case coverage and fewer gaps
    assert rep["a"]["coverage"]["max"] <= rep["b"]["coverage"]["max"]
    assert rep["a"]["coverage"]["p95"] < rep["b"]["coverage"]["p95"]
    assert not rep["b"]["symmetry"]["exact"]


# --- defaults and CLI options ---------------------------------------------------------------


def test_defaults_are_the_shipped_params():
    """Code defaults and params.yaml's whole sample section are one thing."""
    assert SampleParams() == load_params(ROOT / "params.yaml").sample


def test_target_count_bound_is_the_template(tpl):
    assert SampleParams(target_count=57364).target_count == 57364  # the embedded template's size
    with pytest.raises(InputError, match="sample.target_count") as ei:
        sample_set(tpl, SampleParams(target_count=tpl.n_vertices + 1))
    assert f"{tpl.n_vertices} vertices of the template" in ei.value.message


def test_sample_cli_options_override_params(tmp_path, capsys, monkeypatch):
    tdir = save_template(disc_template(256, rx=0.1, ry=0.11), tmp_path / "tpl")
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    assert (
        main(
            [
                "--params",
                str(tmp_path / "params.yaml"),
                "sample",
                "--template",
                str(tdir),
                "--out",
                "d.json",
            ]
        )
        == 2
    )
    assert (
        "params.yaml: params file not found" in capsys.readouterr().err
    )  # a named file must exist
    base = ["sample", "--template", str(tdir)]
    assert main([*base, "--out", "d.json"]) == 0
    assert "no params.yaml here" in capsys.readouterr().err
    d = LandmarkSet.load(tmp_path / "d.json")
    want = SampleParams()
    assert len(d) == want.target_count and d.mirror_exact == want.symmetric and d.name == want.name
    opts = [
        "--name",
        "opt",
        "--rounds",
        "2",
        "--space",
        "frontal",
        "--no-symmetric",
        "--target-count",
        "100",
    ]
    assert main([*base, "--out", "o.json", *opts]) == 0
    o = LandmarkSet.load(tmp_path / "o.json")
    used = o.provenance["sampler"]["params"]
    assert (o.name, len(o), used["rounds"], used["space"], used["symmetric"]) == (
        "opt",
        100,
        2,
        "frontal",
        False,
    )
    (tmp_path / "p.yaml").write_text("sample:\n  target_count: 90\n  symmetric: false\n")
    assert (
        main(
            [
                "--params",
                str(tmp_path / "p.yaml"),
                "sample",
                "--template",
                str(tdir),
                "--out",
                "n.json",
                "--target-count",
                "none",
                "--rounds",
                "1",
            ]
        )
        == 0
    )
    n = LandmarkSet.load(tmp_path / "n.json")
    assert n.provenance["sampler"]["params"]["target_count"] is None
    assert len(n) == n.provenance["sampler"]["after_kpt68"]
    capsys.readouterr()
    assert main([*base, "--out", "x.json", "--rounds", "99"]) == 2
    assert "--rounds" in capsys.readouterr().err
