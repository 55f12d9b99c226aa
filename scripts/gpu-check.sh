#!/usr/bin/env bash
# On a GPU machine with the CUDA driver and libraries but no Rust toolchain,
# after scripts/gpu-pack.sh was run on a build machine and target/gpu-bundle
# carried over:
#   1. `ebda devices` on CUDA;
#   2. the device-generic tests (ops at ties, critic, classifier, DANN, features) with
#      EBDA_TEST_DEVICE=cuda;
#   3. short real training runs — MNIST→USPS, DANN and EBDA, 300 iterations —
#      on CUDA and on the CPU, printing images/s side by side;
#   4. device memory over a long run: EBDA on CUDA for N and 5N iterations
#      (MEM_ITERS, default 400), the process's peak GPU memory sampled from
#      nvidia-smi; the longer run may not use more than 64 MiB above the
#      shorter (a graph chained across steps grows without bound).
# Exits non-zero on any failure. Budget: well under 8 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
ITERS="${ITERS:-300}"
# shellcheck source=scripts/gpu-env.sh
source scripts/gpu-env.sh

fail=0
echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || fail=1
echo "== ebda devices"
"$EBDA" --device cuda devices || fail=1

echo "== device-generic tests on CUDA"
for t in "$WORK"/tests/*; do
  echo "-- $(basename "$t")"
  EBDA_TEST_DEVICE=cuda "$t" -q --test-threads 4 2>&1 | tail -n 3 || fail=1
  [ "${PIPESTATUS[0]}" = 0 ] || { echo "FAILED: $(basename "$t")"; fail=1; }
done

echo "== training throughput, MNIST→USPS, $ITERS iterations, batch 64+64"
printf '%-6s %-5s %12s %14s\n' method device images/s target_acc
for method in dann ebda; do
  for dev in cuda cpu; do
    out="$WORK/run-$method-$dev"
    rm -rf "$out"
    threads=$(nproc)
    if summary=$("$EBDA" --device "$dev" --threads "$threads" -q train --config experiments/digits/M2U-5k.json \
        --set "method=$method" --set "train.iterations=$ITERS" --set "train.eval_every=$ITERS" \
        --set "train.checkpoint_every=$ITERS" --out "$out" --no-progress 2>"$out.err"); then
      ips=$(echo "$summary" | python3 -c 'import sys, json; print(round(json.load(sys.stdin)["train_images_per_s"]))')
      acc=$(echo "$summary" | python3 -c 'import sys, json; print(json.load(sys.stdin)["headline"]["target_acc"])')
      printf '%-6s %-5s %12s %14s\n' "$method" "$dev" "$ips" "$acc"
    else
      echo "FAILED: $method on $dev"; tail -n 5 "$out.err"; fail=1
    fi
  done
done
echo "== device memory: EBDA on CUDA, N and 5N iterations"
# peak_mib ITERS: runs EBDA for ITERS iterations; prints its peak GPU memory (MiB).
peak_mib() {
  local out="$WORK/mem-$1" peak=0 used pid
  rm -rf "$out"
  "$EBDA" --device cuda -q train --config experiments/digits/M2U-5k.json --set method=ebda \
    --set "train.iterations=$1" --set "train.eval_every=$1" --set "train.checkpoint_every=$1" \
    --out "$out" --no-progress --no-plots >/dev/null 2>"$out.err" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    used=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null \
      | awk -F', *' -v p="$pid" '$1 == p {print $2}')
    [ -n "$used" ] && [ "$used" -gt "$peak" ] && peak=$used
    sleep 0.2
  done
  wait "$pid" || { echo "FAILED: memory run of $1 iterations" >&2; tail -n 5 "$out.err" >&2; return 1; }
  echo "$peak"
}
N="${MEM_ITERS:-400}"
if short=$(peak_mib "$N") && long=$(peak_mib $((5 * N))); then
  echo "peak GPU memory: $short MiB after $N iterations, $long MiB after $((5 * N))"
  if [ "$long" -gt $((short + 64)) ]; then
    echo "FAILED: device memory grows with the step count"; fail=1
  fi
else
  fail=1
fi

[ "$fail" = 0 ] && echo "gpu-check: all passed" || echo "gpu-check: FAILURES"
exit "$fail"
