"""The PRNet face template: reading (real files and broken ones), ids, mirror, grid triangles."""

from __future__ import annotations

import numpy as np
import pytest

from densemark.core.errors import InputError
from densemark.faces.template import FaceTemplate, grid_triangles, load_template, save_template

# --- a small self-made template ----------------------------------------------------------------


def disc_template(res: int = 24, seed: int = 0) -> FaceTemplate:
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:res, 0:res]
    inside = ((u - res / 2 + 0.5) ** 2 + (v - res / 2 + 0.5) ** 2) < (res / 2 - 1.5) ** 2
    face_ind = np.flatnonzero(inside.ravel()).astype(np.int64)
    kpt_vid = rng.choice(len(face_ind), 68, replace=False)
    kpt = np.stack([face_ind[kpt_vid] % res, face_ind[kpt_vid] // res]).astype(np.int64)
    verts = rng.normal(size=(len(face_ind), 3))
    return FaceTemplate(face_ind, kpt, verts, grid_triangles(face_ind, res), res)


@pytest.fixture
def saved(tmp_path):
    t = disc_template()
    save_template(t, tmp_path)
    return t, tmp_path


def test_save_load_round_trip(saved):
    t, d = saved
    back = load_template(d)
    assert back.res == t.res
    for f in ("face_ind", "uv_kpt_ind", "triangles"):
        a = getattr(back, f)
        assert a.dtype == np.int64 and np.array_equal(a, getattr(t, f)), f
    assert back.vertices.dtype == np.float64 and np.array_equal(back.vertices, t.vertices)
    assert back.sha256() == t.sha256()


def test_missing_triangles_file_gives_grid_triangulation(saved):
    t, d = saved
    (d / "triangles.txt").unlink()
    back = load_template(d)
    assert np.array_equal(back.triangles, grid_triangles(t.face_ind, t.res))


def test_sha256_depends_on_content():
    a, b = disc_template(seed=0), disc_template(seed=0)
    assert a.sha256() == b.sha256()
    c = FaceTemplate(a.face_ind, a.uv_kpt_ind, a.vertices + 0.1, a.triangles, a.res)
    assert c.sha256() != a.sha256()
    # last-bit noise (e.g. another CPU's SIMD exp) does not change the hash
    d = FaceTemplate(a.face_ind, a.uv_kpt_ind, a.vertices * (1 + 1e-13), a.triangles, a.res)
    assert d.sha256() == a.sha256()


def _expect(d, name, field, exc_match=None):
    with pytest.raises(InputError) as ei:
        load_template(d)
    msg = str(ei.value)
    assert name in msg, msg
    assert field in msg, msg
    if exc_match:
        assert exc_match in msg, msg
    return msg


@pytest.mark.parametrize("name", ["face_ind.txt", "uv_kpt_ind.txt", "canonical_vertices.npy"])
def test_missing_file(saved, name):
    _, d = saved
    (d / name).unlink()
    _expect(d, name, name.split(".")[0])


@pytest.mark.parametrize(
    "name", ["face_ind.txt", "uv_kpt_ind.txt", "canonical_vertices.npy", "triangles.txt"]
)
def test_empty_file(saved, name):
    _, d = saved
    (d / name).write_bytes(b"")
    _expect(d, name, name.split(".")[0])


@pytest.mark.parametrize(
    ("name", "blame"),
    [
        # half of face_ind: fewer template vertices than canonical_vertices rows
        ("face_ind.txt", "canonical_vertices"),
        ("uv_kpt_ind.txt", "uv_kpt_ind"),
        ("canonical_vertices.npy", "canonical_vertices"),
        ("triangles.txt", "triangles"),
    ],
)
def test_truncated_file(saved, name, blame):
    _, d = saved
    p = d / name
    b = p.read_bytes()
    cut = len(b) // 2
    if name.endswith(".txt"):
        # multi-column tables: cut at a separator inside a row (a short last row);
        # one column: cut at a line end (fewer rows)
        cut = b.index(b" ", cut) if b" " in b else b.index(b"\n", cut) + 1
    p.write_bytes(b[:cut])
    _expect(d, blame if name != "face_ind.txt" else "canonical_vertices.npy", blame)


def _write_txt(d, name, arr, fmt="%.18e"):
    np.savetxt(d / name, arr, fmt=fmt)


def test_face_ind_repeated(saved):
    t, d = saved
    fi = t.face_ind.copy()
    fi[5] = fi[4]
    _write_txt(d, "face_ind.txt", fi)
    _expect(d, "face_ind.txt", "face_ind", "increasing")


def test_face_ind_unsorted(saved):
    t, d = saved
    fi = t.face_ind.copy()
    fi[[3, 4]] = fi[[4, 3]]
    _write_txt(d, "face_ind.txt", fi)
    _expect(d, "face_ind.txt", "face_ind")


@pytest.mark.parametrize("value", [-1, 24 * 24, 1e9])
def test_face_ind_out_of_range(saved, value):
    t, d = saved
    fi = t.face_ind.astype(np.float64)
    fi[0 if value < 0 else -1] = value
    _write_txt(d, "face_ind.txt", fi)
    _expect(d, "face_ind.txt", "face_ind", "out of range")


@pytest.mark.parametrize("value", [12.5, np.nan, np.inf])
def test_face_ind_not_whole_or_not_finite(saved, value):
    t, d = saved
    fi = t.face_ind.astype(np.float64)
    fi[-1] = value
    _write_txt(d, "face_ind.txt", fi)
    _expect(d, "face_ind.txt", "face_ind")


def test_face_ind_not_numeric(saved):
    _, d = saved
    (d / "face_ind.txt").write_text("12\nthirteen\n14\n")
    _expect(d, "face_ind.txt", "face_ind")


def test_uv_kpt_ind_wrong_shape(saved):
    t, d = saved
    _write_txt(d, "uv_kpt_ind.txt", t.uv_kpt_ind[:, :67])
    _expect(d, "uv_kpt_ind.txt", "uv_kpt_ind", "shape")
    _write_txt(d, "uv_kpt_ind.txt", t.uv_kpt_ind.T)  # (68, 2): the transpose of PRNet's layout
    _expect(d, "uv_kpt_ind.txt", "uv_kpt_ind", "shape")


@pytest.mark.parametrize("value", [24, -1, 3.5])
def test_uv_kpt_ind_bad_values(saved, value):
    t, d = saved
    k = t.uv_kpt_ind.astype(np.float64)
    k[1, 7] = value
    _write_txt(d, "uv_kpt_ind.txt", k)
    _expect(d, "uv_kpt_ind.txt", "uv_kpt_ind")


def test_canonical_vertices_wrong_shape_dtype_nan(saved):
    t, d = saved
    np.save(d / "canonical_vertices.npy", t.vertices[:, :2])
    _expect(d, "canonical_vertices.npy", "canonical_vertices", "shape")
    np.save(d / "canonical_vertices.npy", t.vertices.astype(np.int32))
    _expect(d, "canonical_vertices.npy", "canonical_vertices", "dtype")
    v = t.vertices.copy()
    v[3, 2] = np.nan
    np.save(d / "canonical_vertices.npy", v)
    _expect(d, "canonical_vertices.npy", "canonical_vertices", "non-finite")


def test_canonical_vertices_pickle_is_refused(saved):
    t, d = saved
    np.save(
        d / "canonical_vertices.npy", np.array([t.vertices, "x"], dtype=object), allow_pickle=True
    )
    _expect(d, "canonical_vertices.npy", "canonical_vertices")


@pytest.mark.parametrize("case", ["vertex_out_of_range", "negative", "fractional", "two_columns"])
def test_triangles_bad(saved, case):
    t, d = saved
    tri = t.triangles.astype(np.float64)
    if case == "vertex_out_of_range":
        tri[0, 1] = t.n_vertices  # 1-based file read as 0-based
    elif case == "negative":
        tri[2, 0] = -1
    elif case == "fractional":
        tri[2, 0] = 0.5
    else:
        tri = tri[:, :2]
    _write_txt(d, "triangles.txt", tri, "%.6g")
    _expect(d, "triangles.txt", "triangles")


# --- ids ---------------------------------------------------------------------------------------


def test_pixel_uv_and_id_map_are_inverse():
    t = disc_template()
    uv = t.pixel_uv
    assert np.array_equal(uv[:, 1] * t.res + uv[:, 0], t.face_ind)
    assert np.array_equal(t.id_map[uv[:, 1], uv[:, 0]], np.arange(t.n_vertices))
    assert (t.id_map >= 0).sum() == t.n_vertices
    assert t.id_map[0, 0] == -1  # a corner is off the disc


def test_kpt_ids_and_snapping():
    t = disc_template()
    assert np.array_equal(t.face_ind[t.kpt_ids], t.uv_kpt_ind[1] * t.res + t.uv_kpt_ind[0])
    # an off-face pixel snaps to the nearest face pixel
    corner = np.array([[0, 0], [t.res - 1, t.res // 2]])
    ids = t.ids_of_pixels(corner)
    d2 = ((t.pixel_uv[None] - corner[:, None]) ** 2).sum(-1)
    assert np.array_equal(d2[np.arange(2), ids], d2.min(1))


def test_mirror_ids_on_symmetric_disc():
    t = disc_template()
    m = t.mirror_ids
    assert (m >= 0).all()  # the disc is symmetric about its vertical axis
    assert np.array_equal(m[m], np.arange(t.n_vertices))
    assert np.array_equal(t.pixel_uv[m, 0], t.res - 1 - t.pixel_uv[:, 0])
    assert np.array_equal(t.pixel_uv[m, 1], t.pixel_uv[:, 1])


# --- grid triangles ----------------------------------------------------------------------------


def _signed_area(uv, tri):
    a, b, c = uv[tri[:, 0]], uv[tri[:, 1]], uv[tri[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def test_grid_triangles_full_block():
    res = 6
    fi = np.arange(res * res)
    tri = grid_triangles(fi, res)
    assert tri.shape == (2 * (res - 1) ** 2, 3)
    uv = np.stack([fi % res, fi // res], 1)
    area = _signed_area(uv, tri)
    assert np.all(np.abs(area) == 1)  # right triangles of half a pixel square
    assert len(np.unique(np.sign(area))) == 1  # one consistent winding


@pytest.mark.parametrize("missing", [0, 1, 2, 3])
def test_grid_triangles_three_of_four(missing):
    # a 2x2 block with one pixel missing gives exactly the one triangle of the other three
    block = np.array([0, 1, 4, 5])  # (v, u) = (0,0), (0,1), (1,0), (1,1) on a 4-wide map
    fi = np.delete(block, missing)
    tri = grid_triangles(fi, 4)
    assert tri.shape == (1, 3)
    assert sorted(tri[0].tolist()) == [0, 1, 2]
    full = grid_triangles(block, 4)
    uv = np.stack([fi % 4, fi // 4], 1)
    uvf = np.stack([block % 4, block // 4], 1)
    assert np.sign(_signed_area(uv, tri))[0] == np.sign(_signed_area(uvf, full))[0]


def test_grid_triangles_random_mask_properties():
    rng = np.random.default_rng(1)
    res = 20
    mask = rng.random(res * res) < 0.7
    fi = np.flatnonzero(mask)
    tri = grid_triangles(fi, res)
    assert tri.min() >= 0 and tri.max() < len(fi)
    assert all(len(set(t)) == 3 for t in tri.tolist())
    uv = np.stack([fi % res, fi // res], 1)
    area = _signed_area(uv, tri)
    assert np.all(np.abs(area) == 1) and len(np.unique(np.sign(area))) == 1
    # every triangle lies within one 2x2 block
    assert (np.ptp(uv[tri], axis=1) <= 1).all()
    # no duplicates, and the count follows from the blocks: 2 per full block, 1 per 3-block
    assert len({frozenset(t) for t in tri.tolist()}) == len(tri)
    m = mask.reshape(res, res).astype(int)
    cnt = m[:-1, :-1] + m[:-1, 1:] + m[1:, :-1] + m[1:, 1:]
    assert len(tri) == 2 * (cnt == 4).sum() + (cnt == 3).sum()


# --- real PRNet template -----------------------------------------------------------------------


@pytest.mark.real
def test_real_template_shapes_and_bases(real_dir, real_template):
    t = real_template
    assert t.res == 256 and t.n_vertices == 43867
    assert t.face_ind.dtype == np.int64 and (np.diff(t.face_ind) > 0).all()
    assert 0 <= t.face_ind.min() and t.face_ind.max() < 256 * 256
    assert t.uv_kpt_ind.shape == (2, 68) and t.uv_kpt_ind.dtype == np.int64
    assert t.vertices.shape == (43867, 3) and t.vertices.dtype == np.float64
    assert t.triangles.shape == (86906, 3) and t.triangles.dtype == np.int64
    # triangles.txt is 0-based and read as is
    raw = np.loadtxt(real_dir / "template" / "triangles.txt").astype(np.int64)
    assert np.array_equal(t.triangles, raw)
    assert t.triangles.max() == t.n_vertices - 1
    # face_ind.txt is read as is (flat v * 256 + u)
    assert np.array_equal(
        t.face_ind, np.loadtxt(real_dir / "template" / "face_ind.txt").astype(np.int64)
    )
    # every keypoint pixel is a face pixel
    assert (t.id_map[t.uv_kpt_ind[1], t.uv_kpt_ind[0]] >= 0).all()


@pytest.mark.real
def test_real_seed_keypoints_match_template(real_dir, real_template):
    seed = real_dir / "seed"
    v68 = np.loadtxt(seed / "vertices_68.txt").astype(np.int64)
    v520 = np.loadtxt(seed / "vertices_520_sel_from_blender.txt").astype(np.int64)
    fil = np.loadtxt(seed / "vertices_68_fil_520.txt").astype(np.int64)
    assert v68.shape == (68,) and v520.shape == (520,) and fil.shape == (68,)
    assert np.array_equal(v520[fil], v68)
    kid = real_template.kpt_ids
    # the keypoints from the raw files alone: uv_kpt_ind's pixel (u, v) is the template vertex
    # whose face_ind entry is v * 256 + u (face_ind.txt is sorted)
    face_ind = np.loadtxt(real_dir / "template" / "face_ind.txt").astype(np.int64)
    u, v = np.loadtxt(real_dir / "template" / "uv_kpt_ind.txt").astype(np.int64)
    raw = np.searchsorted(face_ind, v * 256 + u)
    assert np.array_equal(face_ind[raw], v * 256 + u) and np.array_equal(kid, raw)
    differ = np.flatnonzero(kid != v68)
    # PRNet's UV keypoints and the paper's vertices_68.txt disagree on four keypoints, one UV
    # pixel apart (a fact of the two files, stated in the reference data's README): one brow
    # point (23) and the nose bridge below its top down to the tip (28, 29, 30)
    assert differ.tolist() == [23, 28, 29, 30]
    # where they differ, the two pixels are neighbours (one UV pixel apart, diagonals included)
    uv = real_template.pixel_uv
    gap = np.abs(uv[kid[differ]] - uv[v68[differ]]).max(1)  # 8-neighbours
    assert (gap == 1).all()


@pytest.mark.real
def test_real_mirror_ids(real_template):
    m = real_template.mirror_ids
    valid = m >= 0
    # a vertex has a mirror where the face mask flipped left/right (u -> 255 - u) is also face:
    # 43,848 of the 43,867 face pixels (19 on the rim mirror off the mask)
    mask = np.zeros(256 * 256, bool)
    mask[real_template.face_ind] = True
    mask = mask.reshape(256, 256)
    assert valid.sum() == (mask & mask[:, ::-1]).sum() == 43848
    assert np.array_equal(m[m[valid]], np.flatnonzero(valid))  # an involution where defined
    # the mirror of the left eye's outer corner (36) is close to the right eye's (45)
    uv = real_template.pixel_uv
    k = real_template.kpt_ids
    mirrored = np.array([255 - uv[k[36], 0], uv[k[36], 1]])
    assert np.abs(mirrored - uv[k[45]]).max() <= 3


@pytest.mark.real
def test_real_grid_triangles_contain_prnet_triangles(real_template):
    g = grid_triangles(real_template.face_ind)
    gs = {frozenset(t) for t in g.tolist()}
    missing = [t for t in real_template.triangles.tolist() if frozenset(t) not in gs]
    assert not missing, (
        f"{len(missing)} PRNet triangles not in the grid triangulation, e.g. {missing[:3]}"
    )
    assert len(g) >= len(real_template.triangles)
