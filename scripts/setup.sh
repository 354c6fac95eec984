#!/usr/bin/env bash
# Set densemark up on a fresh machine (idempotent):
#   .venv          the toolkit with pinned dependencies (pip check clean)
#   .venv-blender  bpy for the Blender round trip, kept apart because bpy pins numpy<2
#                  (skip it with DENSEMARK_SKIP_BLENDER=1)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "densemark needs Python 3.11"'

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
fi
echo "setup: installing densemark and its pinned dependencies into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
.venv/bin/python -m pip check

if [ "${DENSEMARK_SKIP_BLENDER:-0}" != "1" ]; then
    PYTHON="$PYTHON" bash scripts/setup-blender.sh
fi
echo "setup: done"
