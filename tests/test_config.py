from __future__ import annotations

import pytest

from densemark.config import Params, load_params
from densemark.core.errors import ConfigError


def test_defaults_when_missing(tmp_path):
    assert load_params(tmp_path / "none.yaml") == Params()


def test_repo_params_load():
    from tests.conftest import ROOT

    load_params(ROOT / "params.yaml")


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
