#!/usr/bin/env bash
# The board side on an emulated arm64 Debian root (scripts/arm64_root.sh): the board wheel built from this checkout
# and installed there with the edge extra, as a Pi user installs it; then, inside the root, edge doctor, edge bundle
# check of each arm64 bundle (rpi4's with QEMU_CPU=cortex-a72: no int8 dot product), the board test tier, edge run on
# 60 frames of the stage clip, cut here as PNG files (its decisions compared with the same bundle's on this machine),
# and edge serve's /health. Bundles (the demo's verifier and generator for rpi5, rpi4 and jetson-orin-nano, whose
# TensorRT-only files are skipped; the real-face one for rpi5) are compiled here from make demo's checkpoints when
# missing (run make demo first). Writes OUT/summary.json.
# Usage: scripts/arm64_check.sh PYTHON OUT_DIR   (make arm64 passes .venv/bin/python and out/arm64)
set -euo pipefail
PY=${1:-.venv/bin/python}
OUT=${2:-out/arm64}
DEMO=${EDGE_FACE_DEMO:-out/demo}
DATA=${EDGE_FACE_DATA:-../shared/data}
CLIP="$DATA/video/stage_clip_360p.mp4"
say() { printf '\n== arm64: %s\n' "$*"; }

for needed in "$DEMO/runs/dlib_resnet.pt" "$DEMO/runs/verifier.pt" "$DEMO/data/train" "$CLIP"; do
    [ -e "$needed" ] || { echo "error: $needed is missing: run make demo first (with ../shared/data)" >&2; exit 2; }
done
ROOT=$(bash scripts/arm64_root.sh | tail -1)
mkdir -p "$OUT/bundles"

say "compile what is missing, here (x86_64)"
if [ ! -f "$OUT/bundles/real/rpi5/manifest.json" ]; then
    texture=()
    [ -f "$DEMO/runs/texture.pt" ] && texture=("$DEMO/runs/texture.pt" --detector_photos "$DATA/faces80/net_7876"
                                               --texture_artifacts onnx:fp32,tflite:fp32)
    $PY -m compile --target rpi5 --checkpoints "$DEMO/runs/dlib_resnet.pt" "${texture[@]}" \
        --calibration "$DEMO/data/real_calibration" --pairs_images "$DATA/orl" "$DATA/yaleb" \
        --cohort_images "$DATA/faces80" --out "$OUT/bundles/real"
fi
for board in rpi5 rpi4 jetson-orin-nano; do
    [ -f "$OUT/bundles/demo/$board/manifest.json" ] && continue
    # a file that fails its gate is left out of the bundle and reported (the demo's small verifier misses the INT8
    # floor on the Jetson's symmetric activations); what the bundle carries is what is checked on arm64
    $PY -m compile --target "$board" --checkpoints "$DEMO/runs/verifier.pt" "$DEMO/runs/generator.pt" \
        --calibration "$DEMO/data/train" --out "$OUT/bundles/demo" ||
        [ -f "$OUT/bundles/demo/$board/manifest.json" ]
done

say "the board wheel, installed in the root with the edge extra"
rm -rf "$OUT/wheel"
$PY -m pip wheel . --no-deps --no-build-isolation -q -w "$OUT/wheel"
WORK="$ROOT/work"
rm -rf "$WORK" && mkdir -p "$WORK"
cp "$OUT"/wheel/*.whl "$WORK/"
cp -r "$OUT/bundles" "$WORK/bundles"
cp "$CLIP" "$WORK/stage_clip.mp4"
$PY scripts/arm64_inside.py --cut "$CLIP" "$WORK/stage_frames"      # the frames the kiosk runs on, on both machines
mkdir -p "$WORK/tests" && cp -r tests/board tests/conftest.py "$WORK/tests/"
cp scripts/arm64_inside.py "$WORK/"
mount -t proc proc "$ROOT/proc"
trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
IN=(chroot "$ROOT" env -i PATH=/opt/edge-face/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
    PIP_DISABLE_PIP_VERSION_CHECK=1 EDGE_FACE_HOME=/work/home)
wheel=$(basename "$OUT"/wheel/*.whl)
# as the README's Raspberry Pi section, without its picamera2 steps (numpy 1.x among them: with it pip resolves
# OpenCV 4.11, and the stage clip then gave three more undecided visits than x86's OpenCV 4.14); eager, so that the
# root's packages are what a fresh install gets today
"${IN[@]}" pip install -q --force-reinstall --no-deps "/work/$wheel"
"${IN[@]}" pip install -q --upgrade --upgrade-strategy eager "/work/$wheel[edge]"

say "inside the root (aarch64): doctor, bundle checks, board tests, run, serve"
"${IN[@]}" sh -c "cd /work && python arm64_inside.py" 2> >(grep -v 'cpuinfo' >&2)

say "the same run here (x86_64): the same decisions?"
HOST_HOME=$(mktemp -d)
trap 'umount "$ROOT/proc" 2>/dev/null || true; rm -rf "$HOST_HOME"' EXIT
EDGE_FACE_HOME=$HOST_HOME $PY scripts/arm64_inside.py --host "$OUT/bundles/real/rpi5" "$CLIP" "$WORK/stage_frames" \
    "$WORK/summary.json" "$OUT/summary.json"
cat "$OUT/summary.json"
