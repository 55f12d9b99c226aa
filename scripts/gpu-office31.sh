#!/usr/bin/env bash
# On a GPU machine (bundle from `OFFICE31="amazon webcam" scripts/gpu-pack.sh`
# carried over): the first Office-31 measurement — A→W with the fine-tuning
# config (ResNet-50, tllib's protocol), source-only, DANN and EBDA at once on
# the one GPU, ITERS iterations each (tllib's schedules over the first ITERS
# iterations: α = 0.001·ITERS, γ = ITERS/1000), evaluation every ITERS/4.
# With ImageNet weights at $WEIGHTS the curves mean something; without them
# the backbone is randomly initialised and the run measures speed only.
# Prints images/s per run and the GPU's peak memory; the runs' records
# (metrics, summaries, manifests; no checkpoints) are packed into $OUT.
#   ITERS (default 1000), METHODS (default "source-only dann ebda"), SEEDS (0),
#   WEIGHTS (default data/weights/resnet50-0676ba61.pth), OUT (/tmp/ebda-out).
# Budget: about 6–8 minutes on an H100 at the default ITERS (to be confirmed
# by the first run: that is what it is for).
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/gpu-env.sh
source scripts/gpu-env.sh
ITERS="${ITERS:-1000}"
METHODS="${METHODS:-source-only dann ebda}"
SEEDS="${SEEDS:-0}"
WEIGHTS="${WEIGHTS:-data/weights/resnet50-0676ba61.pth}"
OUT="${OUT:-/tmp/ebda-out}"
mkdir -p "$OUT" runs
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
extra="--set optim.alpha=$(python3 -c "print(0.001*$ITERS)") --set adapt.gamma=$(python3 -c "print($ITERS/1000)")"
extra="$extra --set train.iterations=$ITERS --set train.eval_every=$((ITERS / 4)) --set train.checkpoint_every=$((ITERS / 4))"
if [ -f "$WEIGHTS" ]; then
  extra="$extra --set model.features.backbone.resnet.weights=$WEIGHTS"
else
  echo "no ImageNet weights at $WEIGHTS: random initialisation, speed only"
  extra="$extra --set model.features.backbone.resnet.weights=null"
fi
( while sleep 2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > "$OUT/memory.log" &
mon=$!
start=$(date +%s)
PROTOCOL=finetune TASKS=A2W METHODS="$METHODS" SEEDS="$SEEDS" JOBS=3 THREADS=4 DEVICE=cuda \
  EBDA_BIN="$EBDA" OUT_DIR=runs/office31-gpu EXTRA="$extra" experiments/office31/run.sh
rc=$?
kill "$mon" 2>/dev/null
echo "== $(( $(date +%s) - start )) s for the grid; peak GPU memory $(sort -n "$OUT/memory.log" | tail -1) MiB (all runs together)"
for s in runs/office31-gpu/*/summary.json; do
  echo "$(dirname "$s"): $(grep -o '"target_acc": [0-9.]*' "$s" | head -1), $(grep -o '"train_images_per_s": [0-9.]*' "$s")"
done
tar czf "$OUT/runs.tgz" --exclude=checkpoints runs/office31-gpu
exit $rc
