#!/usr/bin/env bash
# Frozen-feature protocol, step 1: the pooled ResNet-50 features of every
# Office-31 domain present, once (eval-mode BatchNorm, resize 256 + centre
# crop 224, ImageNet normalisation) into $FEATURES/<domain>.safetensors.
#
#   WEIGHTS=data/weights/resnet50-0676ba61.pth experiments/office31/frozen/extract.sh
#
# Environment: WEIGHTS (default data/weights/resnet50-0676ba61.pth, from
# `ebda data fetch resnet50`; WEIGHTS=random for torchvision's random
# initialisation — a pipeline check, its accuracies mean nothing), DATA
# (default ../shared/data/office31), FEATURES (default
# features/office31-resnet50), DOMAINS (default amazon dslr webcam; missing
# ones are skipped with a message), DEVICE (default auto), EBDA_BIN.
set -euo pipefail
cd "$(dirname "$0")/../../.."

WEIGHTS="${WEIGHTS:-data/weights/resnet50-0676ba61.pth}"
DATA="${DATA:-../shared/data/office31}"
FEATURES="${FEATURES:-features/office31-resnet50}"
DOMAINS="${DOMAINS:-amazon dslr webcam}"
DEVICE="${DEVICE:-auto}"
EBDA_BIN="${EBDA_BIN:-target/release/ebda}"

[ -x "$EBDA_BIN" ] || cargo build --release
if [ "$WEIGHTS" = random ]; then
  init=(--random-init)
else
  [ -f "$WEIGHTS" ] || { echo "no weights at $WEIGHTS: run \`ebda data fetch resnet50\` or set WEIGHTS (WEIGHTS=random for a pipeline check)" >&2; exit 1; }
  init=(--weights "$WEIGHTS")
fi
mkdir -p "$FEATURES"
for domain in $DOMAINS; do
  if [ ! -d "$DATA/$domain" ]; then
    echo "skip  $domain: $DATA/$domain not found"
    continue
  fi
  out="$FEATURES/$domain.safetensors"
  if [ -f "$out" ]; then
    echo "skip  $out (exists)"
    continue
  fi
  start=$(date +%s)
  # Written to a .part file and renamed: an interrupted extraction leaves no $out.
  "$EBDA_BIN" features extract --device "$DEVICE" --backbone resnet50 "${init[@]}" \
    --data "office31:$DATA:$domain" --out "$out"
  echo "done  $out in $(( $(date +%s) - start )) s"
done
