"""The benchmarks in ``bench/`` are scripts no test runs end to end: check that every
``densemark`` name they import or reach through a module alias exists (a rename in the package
otherwise breaks them silently, as it once broke ``bench_build.py``'s set-up)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _refs(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, attribute) for each densemark name the script uses."""
    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, str] = {}  # local name -> densemark module
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("densemark"):
            for a in node.names:
                try:
                    importlib.import_module(f"{node.module}.{a.name}")
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"  # a submodule
                except ModuleNotFoundError:
                    out.append((node.lineno, node.module, a.name))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("densemark"):
                    aliases[a.asname or a.name] = a.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            out.append((node.lineno, aliases[node.value.id], node.attr))
    return out


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_scripts_reference_existing_names(script):
    refs = _refs(BENCH / script)
    assert refs, f"{script} uses no densemark name"
    missing = [
        f"{script}:{line}: {mod}.{name}"
        for line, mod, name in refs
        if not hasattr(importlib.import_module(mod), name)
    ]
    assert not missing, "names the package no longer has:\n" + "\n".join(missing)
