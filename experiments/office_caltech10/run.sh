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

ALL_TASKS="A2C A2D A2W C2A C2D C2W D2A D2C D2W W2A W2C W2D"
TASKS="${TASKS:-$ALL_TASKS}"
METHODS="${METHODS:-source-only dann cdan cdan+e ebda cdan-energy}"
SEEDS="${SEEDS:-0 1 2}"
JOBS="${JOBS:-2}"
THREADS="${THREADS:-1}"
DATA="${DATA:-../shared/data/office_caltech10/surf}"
EBDA_BIN="${EBDA_BIN:-target/release/ebda}"
OUT_DIR="${OUT_DIR:-runs/office_caltech10}"
EXTRA="${EXTRA:-}"
export EBDA_BIN OUT_DIR THREADS DATA EXTRA

[ -x "$EBDA_BIN" ] || cargo build --release
mkdir -p "$OUT_DIR"

one() {
  local task=$1 method=$2 seed=$3
  local dir="$OUT_DIR/$task-$method-seed$seed"
  if [ -f "$dir/summary.json" ]; then
    echo "skip  $dir (finished)"
    return 0
  fi
  if [ -f "$dir/checkpoints/latest.json" ]; then
    echo "resume $dir"
    "$EBDA_BIN" --threads "$THREADS" -q train --resume "$dir" --no-progress > "$dir.out" 2>&1 || { echo "FAIL  $dir (see $dir.out)"; return 1; }
  else
    local file
    file() {
      case $1 in
        A) echo "$DATA/amazon_SURF_L10.mat" ;;
        C) echo "$DATA/Caltech10_SURF_L10.mat" ;;
        D) echo "$DATA/dslr_SURF_L10.mat" ;;
        W) echo "$DATA/webcam_SURF_L10.mat" ;;
        *) echo "unknown domain letter $1 in task $task" >&2; return 1 ;;
      esac
    }
    local src tgt
    src=$(file "${task:0:1}") && tgt=$(file "${task:2:1}") || return 1
    local m=(--set "method=$method")
    [ "$method" = "cdan+e" ] && m=(--set method=cdan --set method.cdan.entropy=true --set label=cdan+e)
    rm -rf "$dir"
    echo "start $dir"
    # shellcheck disable=SC2086
    "$EBDA_BIN" --threads "$THREADS" -q train --config experiments/office_caltech10/surf.json \
      --set "task=$task" "${m[@]}" --set "seed=$seed" \
      --set "data.source.root=$src" --set "data.target.root=$tgt" --set "data.target_test.root=$tgt" \
      $EXTRA --out "$dir" --no-progress > "$dir.out" 2>&1 || { echo "FAIL  $dir (see $dir.out)"; return 1; }
  fi
  echo "done  $dir: $(grep -o '"target_acc": [0-9.]*' "$dir/summary.json" | head -1)"
}
export -f one

for task in $TASKS; do
  for method in $METHODS; do
    for seed in $SEEDS; do
      echo "$task $method $seed"
    done
  done
done | xargs -P "$JOBS" -L 1 bash -c 'one "$@"' _
