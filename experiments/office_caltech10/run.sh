#!/usr/bin/env bash
# Office-Caltech10 SURF (800-d bag of words, Gong et al. 2012): the 12 tasks
# between amazon (A), Caltech10 (C), dslr (D) and webcam (W) × methods ×
# seeds, from surf.json with the task's source and target files set. Full-sample
# transductive protocol: every source sample labelled, every target sample
# unlabelled in training and evaluated. JOBS runs at a time, each on THREADS
# CPU threads; a run directory without summary.json is resumed from its latest
# checkpoint, a finished one is skipped.
#
#   TASKS="A2W C2A" METHODS="source-only dann ebda" SEEDS="0 1 2" JOBS=2 experiments/office_caltech10/run.sh
#
# Methods: any ebda method name, and cdan+e (cdan with entropy conditioning,
# reported as its own row). Environment: EBDA_BIN (default target/release/ebda),
# DATA (default ../shared/data/office_caltech10/surf), OUT_DIR (default
# runs/office_caltech10), THREADS (default 1), JOBS (default 2), EXTRA
# (more --set arguments).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=experiments/grid.sh
source experiments/grid.sh

TASKS="${TASKS:-A2C A2D A2W C2A C2D C2W D2A D2C D2W W2A W2C W2D}"
METHODS="${METHODS:-source-only dann cdan cdan+e ebda cdan-energy}"
SEEDS="${SEEDS:-0 1 2}"
JOBS="${JOBS:-2}"
THREADS="${THREADS:-1}"
DEVICE="${DEVICE:-cpu}"
DATA="${DATA:-../shared/data/office_caltech10/surf}"
EBDA_BIN="${EBDA_BIN:-target/release/ebda}"
OUT_DIR="${OUT_DIR:-runs/office_caltech10}"
EXTRA="${EXTRA:-}"
export OUT_DIR DATA

one() {
  local task=$1 method=$2 seed=$3 src tgt
  file() {
    case $1 in
      A) echo "$DATA/amazon_SURF_L10.mat" ;;
      C) echo "$DATA/Caltech10_SURF_L10.mat" ;;
      D) echo "$DATA/dslr_SURF_L10.mat" ;;
      W) echo "$DATA/webcam_SURF_L10.mat" ;;
      *) echo "unknown domain letter $1 in task $task" >&2; return 1 ;;
    esac
  }
  src=$(file "${task:0:1}") && tgt=$(file "${task:2:1}") || return 1
  # shellcheck disable=SC2046
  run_or_resume "$OUT_DIR/$task-$method-seed$seed" --config experiments/office_caltech10/surf.json \
    --set "task=$task" $(method_args "$method") --set "seed=$seed" \
    --set "data.source.root=$src" --set "data.target.root=$tgt" --set "data.target_test.root=$tgt"
}
grid
