#!/usr/bin/env bash
# Prepares what scripts/gpu-check.sh needs on a GPU machine that has the CUDA
# driver and libraries but no Rust toolchain: builds the CUDA binary and the
# device-generic test executables (scripts/build-cuda.sh), strips and
# compresses them, and copies the shared digits (MNIST 5k and full, USPS), into target/gpu-bundle/
# (an ignored build folder, carried to the device machine).
#
#   scripts/gpu-pack.sh            then carry target/gpu-bundle and run scripts/gpu-check.sh there
#   OFFICE31="amazon webcam" scripts/gpu-pack.sh
#                                  also the Office-31 images of those domains (for
#                                  scripts/gpu-office31.sh; the run tool carries 64 MiB
#                                  in all — amazon + webcam are 51 MB, so that bundle
#                                  leaves the test executables out: NO_TESTS=1 is implied)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=target/gpu-bundle
DATA="${EBDA_DATA_DIR:-../shared/data}"

OFFICE31="${OFFICE31:-}"
[ -n "$OFFICE31" ] && NO_TESTS=1
scripts/build-cuda.sh
# Test executables of the crates whose tests take their device from EBDA_TEST_DEVICE.
scripts/build-cuda.sh --check >/dev/null
CACHE="${EBDA_CUDA_CACHE:-$HOME/.cache/ebda/cuda-13.0}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" CUDA_HOME="$CACHE/cuda" PATH="$CACHE/cuda/bin:$PATH"
export LIBRARY_PATH="$CACHE/stub:$CACHE/cuda/lib64" RUSTFLAGS="${RUSTFLAGS:-} -L $CACHE/stub -L $CACHE/cuda/lib64"
tests=
[ -n "${NO_TESTS:-}" ] || tests=$(CARGO_TARGET_DIR=target-cuda cargo test --release --features cuda \
  -p ebda-nn -p ebda-critic -p ebda-classifier -p ebda-dann -p ebda-features --tests --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')

rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/bin" "$BUNDLE/tests" "$BUNDLE/data"
strip -o "$BUNDLE/bin/ebda" target-cuda/release/ebda
for t in $tests; do strip -o "$BUNDLE/tests/$(basename "$t" | sed 's/-[0-9a-f]*$//')" "$t"; done
(cd "$BUNDLE" && tar cf - bin tests | xz -T2 -6 > payload.tar.xz && rm -rf bin tests)
cp -r "$DATA/mnist" "$DATA/usps" "$BUNDLE/data/"
# The full MNIST (11 MB) for experiments/digits/sweep-full.json, except beside
# Office-31 images (the 64 MiB the run tool carries).
[ -n "$OFFICE31" ] || cp -r "$DATA/mnist-full" "$BUNDLE/data/"
for domain in $OFFICE31; do
  mkdir -p "$BUNDLE/data/office31"
  cp -r "$DATA/office31/$domain" "$BUNDLE/data/office31/"
done
du -sh "$BUNDLE"
