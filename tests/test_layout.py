"""The package is laid out in the order the data moves: each part imports only from parts before it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "densemark"

# data flow order; a module may import from its own part and from parts of lower rank
RANK = {
    "core": 0,
    "faces": 1,
    "sampling": 2,
    "reference": 2.5,  # slow, obviously-correct implementations of faces/sampling (tests, bench)
    "sources": 3,
    "datasets": 4,
    "train": 5,
    "evaluate": 6,
    "card": 7,
    "config": 8,  # composes every part's params section
    "pipeline": 8.5,  # the stage registry: imports every part's stage function
    "flows": 9,
    "cli": 10,
}


def part_of(module: str) -> str:
    """``densemark.faces.uvmap`` -> ``faces``; top-level helpers (``densemark.__init__``) are core."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return "core" if len(parts) == 1 or parts[1] == "__init__" else "cli"
    return parts[1]


def imports_of(path: Path) -> set[str]:
    """Every densemark module imported anywhere in a file (top level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("densemark"))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("densemark")
            and node.level == 0
        ):
            found.add(node.module)
            found.update(
                f"{node.module}.{a.name}" for a in node.names if node.module == "densemark"
            )
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        out.append((".".join(rel.parts), p))
    return out


def test_every_module_belongs_to_a_known_part():
    unknown = {m for m, _ in modules() if part_of(m) not in RANK}
    assert not unknown, f"modules outside the known parts: {sorted(unknown)}"


def backward_imports(module: str, path: Path) -> list[str]:
    """The imports of ``module`` (source at ``path``) from parts ranked after its own part."""
    mine = part_of(module)
    bad = []
    for imp in sorted(imports_of(path)):
        other = part_of(imp)
        if other == "__version__":
            continue
        if mine == "config" and imp.endswith(".params"):
            continue  # config composes every part's params section, the flows' included
        if RANK.get(other, 0) > RANK[mine]:
            bad.append(f"{imp} ({other})")
    return bad


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_imports_run_one_way(module, path):
    bad = backward_imports(module, path)
    assert not bad, f"{module} ({part_of(module)}) imports from later parts: {bad}"


def test_checker_catches_a_backward_import(tmp_path):
    """The checker itself, on synthetic modules: an import hidden in a function from a later part
    is reported, one from an earlier or the same part is not."""
    f = tmp_path / "m.py"
    f.write_text(
        "import numpy\nfrom densemark.core.errors import InputError\n\ndef f():\n    from densemark.datasets.posmap import run_posmap\n"
    )
    assert backward_imports("densemark.faces.m", f) == ["densemark.datasets.posmap (datasets)"]
    assert backward_imports("densemark.datasets.m", f) == []  # its own part and core
    g = tmp_path / "g.py"
    g.write_text("import densemark.cli\nfrom densemark import config\n")
    assert backward_imports("densemark.train.g", g) == [
        "densemark.cli (cli)",
        "densemark.config (config)",
    ]
    assert backward_imports("densemark.config", tmp_path / "m.py") == []
