#!/usr/bin/env bash
# Create the isolated Blender-as-a-module environment `.venv-blender` at the
# repo root (bpy from PyPI; it pins numpy<2, so it must never share the main
# venv). Idempotent: re-running only installs what is missing.
#
#   bash scripts/setup-blender.sh            # create / complete the env
#   BPY_VERSION=5.0.1 PYTHON=python3.11 bash scripts/setup-blender.sh
#
# Note: bpy wheels carry an inner tag that newer `pip check` flags; do not run
# `pip check` on this env.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DENSEMARK_BLENDER_VENV:-$ROOT/.venv-blender}"
PYTHON="${PYTHON:-python3.11}"
BPY_VERSION="${BPY_VERSION:-5.0.1}"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "setup-blender: $PYTHON not found (bpy $BPY_VERSION needs CPython 3.11)" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup-blender: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

if "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('bpy') != '$BPY_VERSION')" 2>/dev/null; then
    echo "setup-blender: bpy $BPY_VERSION already installed in $VENV"
else
    echo "setup-blender: installing bpy==$BPY_VERSION into $VENV (large download)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "bpy==$BPY_VERSION"
fi

# Smoke test: bpy imports and numpy (bundled dependency) is usable.
"$VENV/bin/python" -c "import bpy, numpy; print('setup-blender: ok, bpy', bpy.app.version_string, 'numpy', numpy.__version__)"
