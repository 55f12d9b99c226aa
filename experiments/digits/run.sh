#!/usr/bin/env bash
# Runs task × method × seed into runs/digits/, JOBS at a time, each with
# THREADS CPU threads (or on CUDA with DEVICE=cuda). A run directory that
# exists without summary.json is resumed from its latest checkpoint; a
# finished one is skipped — so an interrupted sweep continues where it stopped.
#
#   TASKS="M2U-5k U2M-5k" METHODS="source-only dann ebda" SEEDS="0 1 2" JOBS=2 experiments/digits/run.sh
#
# Environment: EBDA_BIN (default target/release/ebda), OUT_DIR (default
# runs/digits), DEVICE (default cpu), THREADS (default 1), JOBS (default 2),
# EXTRA (additional --set arguments, e.g. EXTRA="--set train.iterations=3000").
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=experiments/grid.sh
source experiments/grid.sh

TASKS="${TASKS:-M2U-5k U2M-5k}"
METHODS="${METHODS:-source-only dann ebda}"
SEEDS="${SEEDS:-0 1 2}"
JOBS="${JOBS:-2}"
THREADS="${THREADS:-1}"
DEVICE="${DEVICE:-cpu}"
EBDA_BIN="${EBDA_BIN:-target/release/ebda}"
OUT_DIR="${OUT_DIR:-runs/digits}"
EXTRA="${EXTRA:-}"
export OUT_DIR

one() {
  local task=$1 method=$2 seed=$3
  # shellcheck disable=SC2046
  run_or_resume "$OUT_DIR/$task-$method-seed$seed" --config "experiments/digits/$task.json" \
    $(method_args "$method") --set "seed=$seed"
}
grid
