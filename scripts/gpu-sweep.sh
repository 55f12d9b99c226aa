#!/usr/bin/env bash
# On the GPU machine (bundle from scripts/gpu-pack.sh carried over): the
# digits sweep — `ebda sweep run` of SWEEP (default
# experiments/digits/sweep-5k.json) with every run on CUDA at once — while a
# background loop keeps a tarball of the runs' records (configs, manifests,
# metrics, summaries; no checkpoints) in $OUT.  JOBS (default 18).
# The full-MNIST protocol: SWEEP=experiments/digits/sweep-full.json JOBS=30
# (30 LeNet runs of 50 000 iterations at batch 128 + 128; on 2 CPU threads
# one run takes about 47 min, 56 ms per iteration).
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/gpu-env.sh
source scripts/gpu-env.sh
OUT="${OUT:-/tmp/ebda-out}"
SWEEP="${SWEEP:-experiments/digits/sweep-5k.json}"
ROOT=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["out"])' "$SWEEP")
mkdir -p "$OUT" "$ROOT"
pack() {
  tar czf "$OUT/runs.tmp.tgz" --exclude='checkpoints' "$ROOT" 2>/dev/null && mv "$OUT/runs.tmp.tgz" "$OUT/runs.tgz"
}
( while sleep 20; do pack; done ) &
packer=$!
"$EBDA" --device cuda --threads 1 sweep run "$SWEEP" --jobs "${JOBS:-18}"
rc=$?
kill "$packer" 2>/dev/null
pack
exit $rc
