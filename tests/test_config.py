from __future__ import annotations

import pytest
import yaml

from densemark.config import Params, load_params
from densemark.core.errors import ConfigError


def test_defaults_when_missing(tmp_path):
    assert load_params(tmp_path / "none.yaml") == Params()


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
    assert set(written) == set(Params.model_fields), "params.yaml should state every section of Params"
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
