from __future__ import annotations

import types
from typing import Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from densemark.config import Params, load_params
from densemark.core.errors import ConfigError


def test_missing_file_is_an_error_and_none_gives_the_defaults(tmp_path):
    with pytest.raises(ConfigError, match="params file not found") as e:
        load_params(tmp_path / "none.yaml")
    assert str(tmp_path / "none.yaml") in str(e.value)
    assert load_params(None) == Params()


def _int_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted keys of every integer field (not bool) of a params model, nested models included."""
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _int_fields(ann, f"{prefix}{name}.")
        elif ann is int or (
            get_origin(ann) in (Union, types.UnionType)
            and int in get_args(ann)
            and bool not in get_args(ann)
        ):
            out.append(f"{prefix}{name}")
    return out


def _nested(key: str, value: object) -> dict:
    d: object = value
    for part in reversed(key.split(".")):
        d = {part: d}
    return d  # type: ignore[return-value]


INT_KEYS = _int_fields(Params)


def test_every_int_key_is_found():
    assert len(INT_KEYS) > 30 and {
        "build.chunk_size",
        "build.max_image_pixels",
        "splits.seed",
    } <= set(INT_KEYS)


@pytest.mark.parametrize("key", INT_KEYS)
def test_true_is_not_an_integer(tmp_path, key):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(_nested(key, True)))
    with pytest.raises(ConfigError) as e:
        load_params(p)
    assert f"{key}:" in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize("text,key", [("build:\n  chunk_size: 2.0\n", "build.chunk_size"), ('build:\n  chunk_size: "2"\n', "build.chunk_size"),
                                      ("build:\n  flip: 1\n", "build.flip"), ("build:\n  crop_scale: true\n", "build.crop_scale")])  # fmt: skip
def test_no_lax_coercion(tmp_path, text, key):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_params(p)


def test_floats_take_yaml_integers_and_paths_take_strings(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("build:\n  crop_scale: 2\n  blank_crop_std: 0\nmodel:\n  dir: some/where\n")
    q = load_params(p)
    assert (
        q.build.crop_scale == 2.0
        and isinstance(q.build.crop_scale, float)
        and str(q.model.dir) == "some/where"
    )


def _differences(expected: object, got: object, key: str = "") -> list[str]:
    """Dotted keys where a value of ``expected`` (nested mappings) differs from ``got``'s; keys
    only ``got`` has are not compared."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out = [f"{key}{k}: missing" for k in expected if k not in got]
        for k in expected:
            if k in got:
                out += _differences(expected[k], got[k], f"{key}{k}.")
        return out
    return [] if expected == got else [f"{key.rstrip('.')}: expected {expected!r}, got {got!r}"]


def test_repo_params_load():
    """The repository's params.yaml validates, states every section, and every value it writes is
    the value the pipeline gets (nothing dropped, renamed or coerced into something else)."""
    from tests.conftest import ROOT

    path = ROOT / "params.yaml"
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    p = load_params(path)
    assert set(written) == set(Params.model_fields), (
        "params.yaml should state every section of Params"
    )
    assert all(isinstance(v, dict) and v for v in written.values())
    assert not _differences(written, p.model_dump(mode="json"))
    # the file states the code's defaults: `dvc repro` and a run without a params file agree
    defaults = Params().model_dump(mode="json")
    assert not _differences(defaults, p.model_dump(mode="json")) and p == Params()
    # the comparison can fail: a changed value is reported under its dotted key
    changed = {**written, "build": {**written["build"], "res": written["build"]["res"] + 1}}
    assert _differences(changed, p.model_dump(mode="json")) == [
        f"build.res: expected {written['build']['res'] + 1}, got {written['build']['res']}"
    ]


@pytest.mark.parametrize(
    "text,key",
    [
        ("model:\n  uv_res: 8\n", "model.uv_res"),
        ("posmap:\n  resolution: 256\n", "posmap.resolution"),
        ("model:\n  source: nope\n", "model.source"),
        ("bogus: {}\n", "bogus"),
    ],
)
def test_bad_value_names_key(tmp_path, text, key):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_params(p)
    assert key in str(e.value) and str(p) in str(e.value)


def test_not_yaml(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(p)
