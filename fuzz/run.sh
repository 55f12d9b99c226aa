#!/usr/bin/env bash
# Builds the fuzz targets (nightly, cargo-fuzz, AddressSanitizer) and runs
# each for SECONDS (default 25) from the committed seeds plus a work corpus
# under fuzz/corpus/ (not committed). A crash, a panic, an abort, a leak, an
# allocation over 2 GiB or a process over 2.5 GiB fails the run; the input
# lands in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-25}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build --release
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  extra=()
  limit=2048
  if [ "$t" = pth_weights ]; then
    # The real ResNet fixtures and the regression inputs are seeds too.
    extra=(../crates/ebda-features/tests/fixtures/resnet ../crates/ebda-features/tests/fixtures/fuzz)
  fi
  echo "== $t (${secs} s)"
  status=0
  cargo +nightly fuzz run --release "$t" "corpus/$t" "seeds/$t" "${extra[@]}" -- \
    -max_total_time="$secs" -rss_limit_mb=2560 -malloc_limit_mb=$limit \
    -max_len=65536 -timeout=10 -print_final_stats=1 > "corpus/$t.log" 2>&1 || status=$?
  grep -E "^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|peak_rss_mb)|ERROR|panicked|SUMMARY" \
    "corpus/$t.log" | tail -n 8 || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "corpus/$t.log"
    echo "fuzz target $t failed (exit $status); the input is in fuzz/artifacts/$t/"
    exit 1
  fi
done
