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
# The grid: experiments/office31/sweep-finetune.json's A2W, with tllib's
# schedules over the first ITERS iterations, as a sweep file of its own.
weights="null"
if [ -f "$WEIGHTS" ]; then
  weights="\"$WEIGHTS\""
else
  echo "no ImageNet weights at $WEIGHTS: random initialisation, speed only"
fi
SWEEP_FILE=runs/office31-gpu.json ITERS="$ITERS" METHODS="$METHODS" SEEDS="$SEEDS" WEIGHTS_JSON="$weights" python3 - <<'PY'
import json, os
base = json.load(open("experiments/office31/sweep-finetune.json"))
iters = int(os.environ["ITERS"])
known = {m if isinstance(m, str) else m["label"]: m for m in base["methods"]}
methods = os.environ["METHODS"].split()
for m in methods:
    if m not in known:
        raise SystemExit(f"METHODS: {m!r} is not a method of sweep-finetune.json ({', '.join(known)})")
base.update(
    out="runs/office31-gpu",
    tasks=[t for t in base["tasks"] if t["task"] == "A2W"],
    methods=[known[m] for m in methods],
    seeds=[int(s) for s in os.environ["SEEDS"].split()],
    set={"optim.alpha": 0.001 * iters, "adapt.gamma": iters / 1000,
         "train.iterations": iters, "train.eval_every": iters // 4,
         "train.checkpoint_every": iters // 4,
         "model.features.backbone.resnet.weights": json.loads(os.environ["WEIGHTS_JSON"])},
)
json.dump(base, open(os.environ["SWEEP_FILE"], "w"), indent=1)
PY
( while sleep 2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) > "$OUT/memory.log" &
mon=$!
start=$(date +%s)
"$EBDA" --device cuda --threads 4 sweep run runs/office31-gpu.json --jobs 3
rc=$?
kill "$mon" 2>/dev/null
echo "== $(( $(date +%s) - start )) s for the grid; peak GPU memory $(sort -n "$OUT/memory.log" | tail -1) MiB (all runs together)"
for s in runs/office31-gpu/*/summary.json; do
  echo "$(dirname "$s"): $(grep -o '"target_acc": [0-9.]*' "$s" | head -1), $(grep -o '"train_images_per_s": [0-9.]*' "$s")"
done
tar czf "$OUT/runs.tgz" --exclude=checkpoints runs/office31-gpu
exit $rc
