#!/usr/bin/env bash
# Create .venv and install napari-gplws with napari, a Qt binding and the test tools.
# torch is pinned to the 2.13.0 CPU build that this machine kind has on local disk; the
# package itself only asks for a range, so GPU users can keep their CUDA build.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.napari-gplws-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import napari_gplws, torch, napari" 2>/dev/null; then
    echo "[setup] .venv is up to date"
    exit 0
fi
echo "[setup] installing torch 2.13.0 (CPU) and napari-gplws[all,dev] into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[all,dev]" "torch==2.13.0"
echo "$want" > "$stamp"
echo "[setup] done"
