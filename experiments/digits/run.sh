#!/usr/bin/env bash
# Runs task × method × seed into runs/digits/, JOBS at a time, each with
# THREADS CPU threads (or on CUDA with DEVICE=cuda). A run directory that
# exists without summary.json is resumed from its latest checkpoint; a
# finished one is skipped — so an interrupted sweep continues where it stopped.
#
#   TASKS="M2U U2M" METHODS="source-only dann ebda" SEEDS="0 1 2" JOBS=2 experiments/digits/run.sh
#
# Environment: EBDA_BIN (default target/release/ebda), OUT_DIR (default
# runs/digits), DEVICE (default cpu), THREADS (default 1), JOBS (default 2),
# EXTRA (additional --set arguments, e.g. EXTRA="--set train.iterations=3000").
set -euo pipefail
cd "$(dirname "$0")/../.."

TASKS="${TASKS:-M2U U2M}"
METHODS="${METHODS:-source-only dann ebda}"
SEEDS="${SEEDS:-0 1 2}"
JOBS="${JOBS:-2}"
THREADS="${THREADS:-1}"
DEVICE="${DEVICE:-cpu}"
EBDA_BIN="${EBDA_BIN:-target/release/ebda}"
OUT_DIR="${OUT_DIR:-runs/digits}"
EXTRA="${EXTRA:-}"
export EBDA_BIN OUT_DIR THREADS DEVICE EXTRA

[ -x "$EBDA_BIN" ] || cargo build --release
mkdir -p "$OUT_DIR"

one() {
  local task=$1 method=$2 seed=$3
  local dir="$OUT_DIR/$task-$method-seed$seed"
  if [ -f "$dir/summary.json" ]; then
    echo "skip  $dir (finished)"
    return 0
  fi
  local start=$(date +%s)
  if [ -f "$dir/checkpoints/latest.json" ]; then
    echo "resume $dir"
    "$EBDA_BIN" --device "$DEVICE" --threads "$THREADS" -q train --resume "$dir" --no-progress > "$dir.out" 2>&1
  else
    rm -rf "$dir"
    echo "start $dir"
    # shellcheck disable=SC2086
    "$EBDA_BIN" --device "$DEVICE" --threads "$THREADS" -q train --config "experiments/digits/$task.json" \
      --set "method=$method" --set "seed=$seed" $EXTRA --out "$dir" --no-progress > "$dir.out" 2>&1
  fi
  local rc=$?
  echo "done  $dir rc=$rc in $(( $(date +%s) - start )) s: $(grep -o '"target_acc": [0-9.]*' "$dir/summary.json" 2>/dev/null | head -1)"
  return $rc
}
export -f one

for task in $TASKS; do
  for method in $METHODS; do
    for seed in $SEEDS; do
      echo "$task $method $seed"
    done
  done
done | xargs -P "$JOBS" -L 1 bash -c 'one "$@"' _
