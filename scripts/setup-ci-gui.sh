#!/usr/bin/env bash
# Install what the GUI tests need: for tests/test_blender_gui.py a Blender with a GUI (Debian's
# `blender`), Xvfb and xdotool; for the Prefect UI test in tests/test_flows.py Debian's
# `chromium` (run headless). Debian/Ubuntu only, as root or with passwordless sudo; anywhere
# else it says why it did nothing and exits 0 (the GUI tests then skip, naming what is missing).
#
#   bash scripts/setup-ci-gui.sh
set -euo pipefail

PKGS=(blender xvfb xauth xdotool chromium)
if command -v blender >/dev/null 2>&1 && command -v Xvfb >/dev/null 2>&1 \
    && command -v xvfb-run >/dev/null 2>&1 && command -v xdotool >/dev/null 2>&1 \
    && command -v chromium >/dev/null 2>&1; then
    echo "setup-ci-gui: blender, Xvfb, xdotool and chromium already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-ci-gui: no apt-get (not Debian/Ubuntu): install ${PKGS[*]} by hand; the GUI test skips meanwhile"
    exit 0
fi
if [ "$(id -u)" = "0" ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "setup-ci-gui: not root and no passwordless sudo: install ${PKGS[*]} by hand; the GUI test skips meanwhile"
    exit 0
fi
echo "setup-ci-gui: installing ${PKGS[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${PKGS[@]}"
blender --version | head -1
chromium --version
