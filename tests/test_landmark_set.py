"""The landmark-set artifact: building, validation, JSON round trip, edits, the paper's set."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from densemark.core.errors import InputError
from densemark.reference.sampling import optimal_mirror_match
from densemark.sampling.landmark_set import LandmarkSet, diff_ids, edit, edit_summary, make_set
from densemark.sampling.seed_import import IDS_FILE, KPT_POS_FILE, import_seed
from densemark.sampling.symmetry import MIRROR_CONVENTION, mirror_match, template_mirror
from tests.factories import disc_template

ROOT = Path(__file__).resolve().parents[1]
ID_ERROR = re.compile(
    r"\d+ id\(s\) (out of range 0\.\.\d+|repeated), e\.g\. \["
)  # check_ids' wording


@pytest.fixture(scope="module")
def tpl():
    return disc_template(48)


@pytest.fixture(scope="module")
def lset(tpl):
    rng = np.random.default_rng(0)
    ids = np.unique(np.concatenate([tpl.kpt_ids, rng.choice(tpl.n_vertices, 60, replace=False)]))
    rng.shuffle(ids)
    kpos = np.array([np.flatnonzero(ids == k)[0] for k in tpl.kpt_ids])
    return make_set(tpl, ids, name="t", kpt68=kpos, sampler={"method": "test"})


def test_make_set_fields(tpl, lset):
    assert lset.ids.dtype == np.int64 and lset.mirror_perm.dtype == np.int64
    assert np.array_equal(lset.kpt68_ids, tpl.kpt_ids)
    assert np.array_equal(lset.mirror_perm[lset.mirror_perm], np.arange(len(lset)))
    assert lset.template_sha256 == tpl.sha256() and lset.n_template == tpl.n_vertices
    assert lset.provenance["parent"] is None and lset.provenance["edits"] == []
    assert lset.provenance["created_by"].startswith("densemark ")


def test_json_round_trip_byte_stable(tmp_path, tpl, lset):
    a = lset.save(tmp_path / "a.json")
    b = LandmarkSet.load(a, tpl).save(tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()
    back = LandmarkSet.load(b)
    assert back.sha256() == lset.sha256()
    assert np.array_equal(back.mirror_residual, lset.mirror_residual)
    obj = json.loads(a.read_text())
    assert obj["format"] == "densemark-landmark-set" and obj["version"] == 1
    assert set(obj["provenance"]) == {"parent", "sampler", "raw_ids", "edits", "created_by"}


def _corrupt(tmp_path, lset, fn):
    obj = lset.to_dict()
    fn(obj)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(obj))
    return p


@pytest.mark.parametrize(
    ("fn", "field", "msg"),
    [
        (lambda o: o["ids"].__setitem__(0, 10**6), "ids", "out of range"),
        (lambda o: o["ids"].__setitem__(1, o["ids"][0]), "ids", "repeated"),
        (lambda o: o.pop("kpt68"), "kpt68", "missing"),
        (lambda o: o.__setitem__("kpt68", o["kpt68"][:67]), "kpt68", "68"),
        (lambda o: o["kpt68"].__setitem__(0, 10**6), "kpt68", "out of range"),
        (
            lambda o: o["mirror"].__setitem__("perm", o["mirror"]["perm"][:-1]),
            "mirror.perm",
            "length",
        ),
        (
            lambda o: o["mirror"].__setitem__("perm", [1, 2, 0] + o["mirror"]["perm"][3:]),
            "mirror.perm",
            "involution",
        ),
        (lambda o: o["mirror"].__setitem__("exact", not o["mirror"]["exact"]), "mirror.exact", ""),
        (lambda o: o.__setitem__("format", "x"), "format", ""),
        (lambda o: o["ids"].__setitem__(0, 1.5), "ids", "integers"),
        (lambda o: o["provenance"].pop("edits"), "provenance.edits", "missing"),
    ],
)
def test_load_validation_names_file_and_field(tmp_path, lset, fn, field, msg):
    p = _corrupt(tmp_path, lset, fn)
    with pytest.raises(InputError) as ei:
        LandmarkSet.load(p)
    assert ei.value.field == field and ei.value.path == str(p) and msg in ei.value.message


def test_template_hash_mismatch(tmp_path, lset):
    p = lset.save(tmp_path / "a.json")
    other = disc_template(48, bump=0.3)
    with pytest.raises(InputError, match="sha256"):
        LandmarkSet.load(p, other)
    with pytest.raises(InputError, match="n_vertices"):
        LandmarkSet.load(p, disc_template(40))


def test_require_kpt68(tpl):
    s = make_set(tpl, [1, 2, 3], name="x")
    with pytest.raises(InputError, match="kpt68"):
        s.validate(tpl, require_kpt68=True)


def test_make_set_rejects_bad_ids(tpl):
    with pytest.raises(InputError, match="range"):
        make_set(tpl, [0, tpl.n_vertices], name="x")
    with pytest.raises(InputError, match="repeated"):
        make_set(tpl, [3, 3], name="x")


def test_mirror_exact_pairs_and_midline(tpl):
    tm = template_mirror(tpl)
    side = np.flatnonzero((tpl.pixel_uv[:, 0] < 20) & (np.arange(tpl.n_vertices) % 7 == 0))
    mid = np.flatnonzero(tm.midline)[::5]
    ids = np.concatenate([side, tm.ids[side], mid])
    s = make_set(tpl, ids, name="sym")
    assert s.mirror_exact and (s.mirror_residual == 0).all()
    assert np.array_equal(s.ids[s.mirror_perm], tm.ids[s.ids])
    k = len(side)
    assert np.array_equal(s.mirror_perm[2 * k :], np.arange(2 * k, len(ids)))  # midline: self


def test_mirror_match_vs_hungarian(tpl):
    """Greedy involutive matching stays close to the (non-involutive) optimal assignment's cost."""
    rng = np.random.default_rng(3)
    ids = rng.choice(tpl.n_vertices, 80, replace=False)
    perm, res = mirror_match(tpl, ids)
    _, res_opt = optimal_mirror_match(tpl, ids)
    assert np.array_equal(perm[perm], np.arange(80))
    assert res.sum() >= res_opt.sum() - 1e-9
    assert res.mean() <= 3 * res_opt.mean() + 1.0


def test_diff_and_edit(tpl, lset):
    non_kpt = [i for i in lset.ids.tolist() if i not in set(tpl.kpt_ids.tolist())]
    drop = non_kpt[:3]
    add = [i for i in range(tpl.n_vertices) if i not in set(lset.ids.tolist())][:2][::-1]
    new = [i for i in lset.ids.tolist() if i not in drop] + add
    added, removed = diff_ids(lset.ids, new)
    assert added.tolist() == sorted(add) and removed.tolist() == sorted(drop)
    c = edit(lset, tpl, new[::-1], source="blender:a.ply", note="fix", name="c")
    assert c.ids.tolist() == [i for i in lset.ids.tolist() if i not in drop] + sorted(add)
    assert np.array_equal(c.kpt68_ids, lset.kpt68_ids)
    assert c.provenance["parent"] == {"name": "t", "sha256": lset.sha256()}
    assert [e["op"] for e in c.provenance["edits"]] == ["remove", "add"]
    c2 = edit(c, tpl, c.ids.tolist()[:-1], source="s2")
    assert len(c2.provenance["edits"]) == 3 and c2.name == "c"
    assert c2.provenance["parent"]["sha256"] == c.sha256()


def test_edit_refuses_to_drop_keypoints(tpl, lset):
    new = [i for i in lset.ids.tolist() if i != lset.kpt68_ids[8]]
    with pytest.raises(InputError, match="keypoint"):
        edit(lset, tpl, new, source="x")
    c = edit(lset, tpl, new, source="x", allow_drop_kpt=True)
    assert c.kpt68 is None


@pytest.mark.real
def test_import_paper_set(real_dir, real_template, tmp_path):
    s = import_seed(real_dir / "seed", real_template)
    ids = np.loadtxt(real_dir / "seed" / IDS_FILE).astype(int)
    pos = np.loadtxt(real_dir / "seed" / KPT_POS_FILE).astype(int)
    k68 = np.loadtxt(real_dir / "seed" / "vertices_68.txt").astype(int)
    assert len(s) == 520 and np.array_equal(s.ids, ids) and np.array_equal(s.kpt68, pos)
    assert np.array_equal(s.ids[s.kpt68], k68)
    assert not s.mirror_exact  # the paper's set is not mirror-symmetric
    assert np.array_equal(s.mirror_perm[s.mirror_perm], np.arange(520))
    p = s.save(tmp_path / "paper.json")
    assert LandmarkSet.load(p, real_template).sha256() == s.sha256()


def test_import_seed_bad_files(tmp_path, tpl):
    (tmp_path / IDS_FILE).write_text("1.0e+00\n2.5e+00\n")
    (tmp_path / KPT_POS_FILE).write_text("0\n")
    with pytest.raises(InputError) as ei:
        import_seed(tmp_path, tpl)
    assert ei.value.field == "ids" and IDS_FILE in ei.value.path


# --- one id validator -----------------------------------------------------------------------


def test_id_errors_share_one_validator(tmp_path, tpl, lset):
    """Every id list of the sampling part is checked by check_ids: same wording, file and field."""
    n = tpl.n_vertices
    cases = []

    def grab(fn, *a, **k):
        with pytest.raises(InputError) as ei:
            fn(*a, **k)
        cases.append(ei.value)
        return ei.value

    grab(make_set, tpl, [0, n], name="x")
    grab(make_set, tpl, [3, 3], name="x")
    grab(edit, lset, tpl, [*lset.ids.tolist(), n + 5], source="s")
    grab(edit, lset, tpl, [*lset.ids.tolist(), int(lset.ids[0])], source="s")
    obj = lset.to_dict()
    obj["ids"][1] = obj["ids"][0]
    (tmp_path / "rep.json").write_text(json.dumps(obj))
    e = grab(LandmarkSet.load, tmp_path / "rep.json")
    assert e.path == str(tmp_path / "rep.json") and e.field == "ids"
    # the paper's file format, with an id past the template
    ids = np.arange(0, 5 * 80, 5)
    ids[7] = n + 1
    (tmp_path / IDS_FILE).write_text("\n".join(f"{float(i):e}" for i in ids))
    (tmp_path / KPT_POS_FILE).write_text("\n".join(f"{float(i):e}" for i in range(68)))
    e = grab(import_seed, tmp_path, tpl)
    assert e.path == str(tmp_path / IDS_FILE) and e.field == "ids"
    for err in cases:
        assert ID_ERROR.search(err.message), err.message


def test_edit_summary_matches_naive(tpl):
    tm = template_mirror(tpl)
    rng = np.random.default_rng(5)
    side = rng.choice(np.flatnonzero(tpl.pixel_uv[:, 0] < tpl.res // 2 - 2), 30, replace=False)
    parent = make_set(
        tpl, np.concatenate([side, tm.ids[side], np.flatnonzero(tm.midline)[:4]]), name="p"
    )
    assert parent.mirror_exact
    outside = np.setdiff1d(np.arange(tpl.n_vertices), parent.ids)
    new = np.concatenate([np.setdiff1d(parent.ids, side[:3]), outside[::97][:4]])
    child = edit(parent, tpl, new, source="t")
    rep = edit_summary(parent, child, tpl)
    p, c = set(parent.ids.tolist()), set(child.ids.tolist())
    lost, unpaired = [], []
    for v in sorted(c):
        m = int(tm.ids[v])
        if not tm.exact[v] or m == v:
            continue
        if v in p and m in p and m not in c:
            lost.append(v)
        if v not in p and m not in c:
            unpaired.append(v)
    assert rep["lost_partner"] == lost and len(lost) == 3
    assert (
        rep["unpaired_added"] == unpaired
        and rep["added"] == sorted(c - p)
        and rep["removed"] == sorted(p - c)
    )
    assert rep["parent_exact"] and not rep["child_exact"] and not rep["unchanged"]
    assert edit_summary(parent, edit(parent, tpl, parent.ids, source="t"), tpl)["unchanged"]


# --- mirror convention in the file ----------------------------------------------------------


def test_set_file_states_mirror_convention(tmp_path, lset, tpl):
    obj = json.loads(lset.save(tmp_path / "a.json").read_text())
    assert obj["mirror"]["convention"] == MIRROR_CONVENTION
    assert "res-1-u" in MIRROR_CONVENTION and "centre columns" in MIRROR_CONVENTION
    obj["mirror"]["convention"] = "u -> u"
    (tmp_path / "b.json").write_text(json.dumps(obj))
    with pytest.raises(InputError) as ei:
        LandmarkSet.load(tmp_path / "b.json")
    assert ei.value.field == "mirror.convention"


def test_old_file_without_convention_loads_unchanged(tmp_path, lset, tpl):
    old = lset.to_dict()
    del old["mirror"]["convention"]
    text = json.dumps(old, indent=2, sort_keys=True) + "\n"
    (tmp_path / "old.json").write_text(text)
    back = LandmarkSet.load(tmp_path / "old.json", tpl)
    compact = json.dumps(old, sort_keys=True, separators=(",", ":")).encode()
    assert (
        back.sha256() == hashlib.sha256(compact).hexdigest()
    )  # the hash a child recorded stays valid
    assert back.save(tmp_path / "again.json").read_text() == text
    tracked = ROOT / "landmarks" / "embedded-520.json"  # a set written before the field existed
    assert tracked.is_file(), f"{tracked} is tracked in the repository"
    assert "convention" not in json.loads(tracked.read_text())["mirror"]
    assert LandmarkSet.load(tracked).to_json() == tracked.read_text()


def test_template_mismatch_shows_hashes_that_differ(tmp_path, lset, tpl):
    obj = lset.to_dict()
    sha = tpl.sha256()
    obj["template"]["sha256"] = (
        sha[:20] + ("0" if sha[20] != "0" else "1") + sha[21:]
    )  # same first 20
    (tmp_path / "a.json").write_text(json.dumps(obj))
    with pytest.raises(InputError, match="sha256") as ei:
        LandmarkSet.load(tmp_path / "a.json", tpl)
    shown = re.findall(r"[0-9a-f]{12,64}", ei.value.message)
    assert len(shown) == 2 and shown[0] != shown[1], ei.value.message
