#!/usr/bin/env bash
# The whole chain on the built-in synthetic faces: render -> align -> train -> compile -> enroll -> run ->
# benchmark. Usage: scripts/demo.sh PYTHON OUT_DIR (make demo passes .venv/bin/python and out/demo).
set -euo pipefail
PY=${1:-python}
OUT=${2:-out/demo}
BOARD=host
BUNDLE="$OUT/bundles/$BOARD"
KIOSK_PEOPLE="100,101,102,103,104,105"          # 100-103 get enrolled; 104 and 105 are strangers
export PYTHONWARNINGS=ignore
rm -rf "$OUT" && mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }
start=$(date +%s)

step "1/9 render synthetic identities: 40 for training, 20 unseen for evaluation, 6 kiosk visitors"
$PY -m edge synth --out "$OUT/data/train_raw" --identities 40 --images 16 --first_seed 0
$PY -m edge synth --out "$OUT/data/eval_raw" --identities 20 --images 8 --first_seed 200
$PY -m edge synth --out "$OUT/data/visitors" --identities 6 --images 5 --first_seed 100

step "2/9 detect and align the training faces with the runtime's own detector (BlazeFace -> 112x112)"
$PY -m edge align --src "$OUT/data/train_raw" --out "$OUT/data/train"

step "3/9 train the verifier (MobileFaceNet-class, ArcFace) and the seed autoencoder"
$PY -m trainer verifier --data "$OUT/data/train" --out "$OUT/runs/verifier.pt" --max_seconds 150
$PY -m trainer generator --data "$OUT/data/train" --out "$OUT/runs/generator.pt" --max_seconds 45

step "4/9 compile for the $BOARD board: ONNX FP32 + INT8 (calibrated), TFLite FP32, each checked against FP32"
$PY -m compile --target "$BOARD" --checkpoints "$OUT/runs/verifier.pt" "$OUT/runs/generator.pt" \
    --calibration "$OUT/data/train" --out "$OUT/bundles"

step "5/9 enroll four visitors from their photos"
for seed in 100 101 102 103; do
    name=$(printf 'id%04d' "$seed")
    $PY -m edge enroll --bundle "$BUNDLE" --gallery "$OUT/gallery.db" --name "$name" "$OUT/data/visitors/$name"
done

step "6/9 run the kiosk on a synthetic camera: six visitors, two of them strangers (first 5 decisions shown)"
$PY -m edge run --bundle "$BUNDLE" --gallery "$OUT/gallery.db" \
    --source "synthetic://kiosk?seeds=$KIOSK_PEOPLE&frames_per_person=20" \
    --output "$OUT/kiosk.mp4" > "$OUT/decisions.jsonl"
head -n 5 "$OUT/decisions.jsonl"

step "7/9 verification accuracy through detect -> align -> embed on pairs of 20 unseen identities"
$PY -m benchmarks pairs --images "$OUT/data/eval_raw" --out "$OUT/data/eval_pairs.txt" --folds 10 --per_fold 20
$PY -m benchmarks verify --bundle "$BUNDLE" --pairs "$OUT/data/eval_pairs.txt" --images "$OUT/data/eval_raw" \
    --results "$OUT/results"

step "8/9 latency of every model on every backend and precision"
$PY -m benchmarks latency --bundle "$BUNDLE" --results "$OUT/results"

step "9/9 the whole pipeline on the synthetic camera"
$PY -m benchmarks pipeline --bundle "$BUNDLE" --source "synthetic://kiosk?seeds=$KIOSK_PEOPLE&frames_per_person=20" \
    --gallery "$OUT/gallery.db" --results "$OUT/results"

printf '\n== done in %ss. Open: %s/bundles/%s/report.md, %s/results/%s/report.md, %s/kiosk.mp4\n' \
    "$(( $(date +%s) - start ))" "$OUT" "$BOARD" "$OUT" "$BOARD" "$OUT"
