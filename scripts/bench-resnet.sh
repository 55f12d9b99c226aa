#!/usr/bin/env bash
# ResNet-50 throughput, ebda against PyTorch, one after the other on this
# machine's CPU: inference at batch 32 and 64, and a DANN training step
# (ResNet-50 + bottleneck 256 + head 31 + 1024-1024 BN discriminator) at
# batch 32 + 32. Prints a ratio table (ebda / PyTorch; > 1 means faster).
#
#   scripts/bench-resnet.sh [THREADS] [PYTHON]
#
# Needs a release build (cargo build --release) and PyTorch + torchvision
# for PYTHON (pip install torch torchvision). Each training step takes
# about half a minute on 2 cores; the whole run about ten minutes.
set -euo pipefail
threads=${1:-2}
python=${2:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
ebda="$root/target/release/ebda"
[ -x "$ebda" ] || { echo "build first: cargo build --release" >&2; exit 1; }

grep -m1 "model name" /proc/cpuinfo || true
grep -o -m1 -w "avx512f" /proc/cpuinfo >/dev/null && echo "AVX-512: yes" || echo "AVX-512: no (AVX2)"
echo "threads: $threads"

"$ebda" --threads "$threads" bench --arch resnet50 --methods dann --batch 32 \
  --warmup 1 --steps 2 --repeats 2 --infer-batch 32,64 --json "$out/ebda.json"
/usr/bin/env "$python" "$root/experiments/reference/torch_resnet.py" bench --threads "$threads" \
  --batch 32 --infer-batch 32 64 --warmup 1 --steps 2 --warmup-train 1 --steps-train 2 \
  --repeats 2 --json "$out/torch.json"

/usr/bin/env "$python" - "$out/ebda.json" "$out/torch.json" <<'EOF'
import json, sys
ebda = json.load(open(sys.argv[1]))["results"]
torch = json.load(open(sys.argv[2]))["results"]
pairs = [("infer resnet batch 32", "resnet50 infer b32"),
         ("infer resnet batch 64", "resnet50 infer b64"),
         ("train dann resnet", "resnet50 dann b32+32")]
print(f"{'benchmark':<28} {'ebda img/s':>11} {'torch img/s':>12} {'ratio':>7}")
for ours, theirs in pairs:
    a = next(r for r in ebda if r["name"] == ours)["median_images_per_second"]
    b = next(r for r in torch if r["name"] == theirs)["images_per_second"]
    print(f"{theirs:<28} {a:>11.2f} {b:>12.2f} {a / b:>7.2f}")
EOF
rm -rf "$out"
