#!/usr/bin/env bash
# Office-31: tasks × methods × seeds, for either protocol.
#   PROTOCOL=finetune (default): experiments/office31/finetune.json, ImageNet
#     ResNet-50 fine-tuned as the Transfer-Learning-Library runs DANN (a GPU job);
#   PROTOCOL=frozen: experiments/office31/frozen/frozen.json, bottleneck and
#     heads on features cached by frozen/extract.sh (minutes on a CPU).
# A run directory without summary.json is resumed from its latest checkpoint,
# a finished one is skipped; JOBS runs at a time (on one GPU several runs
# share it; see scripts/gpu-sweep.sh for MPS).
#
#   DEVICE=cuda JOBS=3 experiments/office31/run.sh
#   PROTOCOL=frozen THREADS=1 JOBS=2 experiments/office31/run.sh
#
# Environment: TASKS (default A2W D2W W2D A2D D2A W2A; a task needs both its
# domains' data), METHODS (default source-only dann cdan cdan+e ebda), SEEDS
# (default 0 1 2), JOBS (default 1), THREADS (CPU threads per run, default 2),
# DEVICE (default auto), DATA (default ../shared/data/office31), FEATURES
# (frozen: default features/office31-resnet50), OUT_DIR (default
# runs/office31-$PROTOCOL), EXTRA (more --set arguments), EBDA_BIN.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=experiments/grid.sh
source experiments/grid.sh

PROTOCOL="${PROTOCOL:-finetune}"
TASKS="${TASKS:-A2W D2W W2D A2D D2A W2A}"
METHODS="${METHODS:-source-only dann cdan cdan+e ebda}"
SEEDS="${SEEDS:-0 1 2}"
JOBS="${JOBS:-1}"
THREADS="${THREADS:-2}"
DEVICE="${DEVICE:-auto}"
DATA="${DATA:-../shared/data/office31}"
FEATURES="${FEATURES:-features/office31-resnet50}"
OUT_DIR="${OUT_DIR:-runs/office31-$PROTOCOL}"
EBDA_BIN="${EBDA_BIN:-target/release/ebda}"
EXTRA="${EXTRA:-}"
case $PROTOCOL in
  finetune) CONFIG=experiments/office31/finetune.json ;;
  frozen) CONFIG=experiments/office31/frozen/frozen.json ;;
  *) echo "PROTOCOL must be finetune or frozen, got $PROTOCOL" >&2; exit 2 ;;
esac
export PROTOCOL CONFIG DATA FEATURES OUT_DIR

one() {
  local task=$1 method=$2 seed=$3 src tgt d
  local dir="$OUT_DIR/$task-$method-seed$seed"
  domain() {
    case $1 in
      A) echo amazon ;; D) echo dslr ;; W) echo webcam ;;
      *) echo "unknown domain letter $1 in task $task" >&2; return 1 ;;
    esac
  }
  src=$(domain "${task:0:1}") && tgt=$(domain "${task:2:1}") || return 1
  local sets=()
  if [ "$PROTOCOL" = frozen ]; then
    for d in "$src" "$tgt"; do
      [ -f "$FEATURES/$d.safetensors" ] || { echo "SKIP  $dir: no $FEATURES/$d.safetensors (run experiments/office31/frozen/extract.sh)"; return 0; }
    done
    sets=(--set "data.source.root=$FEATURES/$src.safetensors" --set "data.target.root=$FEATURES/$tgt.safetensors"
          --set "data.target_test.root=$FEATURES/$tgt.safetensors")
  else
    for d in "$src" "$tgt"; do
      [ -d "$DATA/$d" ] || { echo "SKIP  $dir: no $DATA/$d"; return 0; }
    done
    sets=(--set "data.source.root=$DATA" --set "data.target.root=$DATA" --set "data.target_test.root=$DATA"
          --set "data.source.domain=$src" --set "data.target.domain=$tgt" --set "data.target_test.domain=$tgt")
  fi
  # shellcheck disable=SC2046
  run_or_resume "$dir" --config "$CONFIG" --set "task=$task" $(method_args "$method") --set "seed=$seed" "${sets[@]}"
}
grid
