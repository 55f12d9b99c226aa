#!/usr/bin/env bash
# On the GPU machine (bundle from scripts/gpu-pack.sh carried over): the
# digits sweep — experiments/digits/run.sh with every run on CUDA at once —
# while a background loop keeps a tarball of the runs' records (configs,
# manifests, metrics, summaries; no checkpoints) in $OUT.
#   TASKS, METHODS, SEEDS as for experiments/digits/run.sh; JOBS (default 18).
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/gpu-env.sh
source scripts/gpu-env.sh
OUT="${OUT:-/tmp/ebda-out}"
mkdir -p "$OUT" runs/digits
pack() {
  tar czf "$OUT/runs.tmp.tgz" --exclude='checkpoints' runs/digits 2>/dev/null && mv "$OUT/runs.tmp.tgz" "$OUT/runs.tgz"
}
( while sleep 20; do pack; done ) &
packer=$!
DEVICE=cuda JOBS="${JOBS:-18}" THREADS=1 EBDA_BIN="$EBDA" experiments/digits/run.sh
rc=$?
kill "$packer" 2>/dev/null
pack
exit $rc
