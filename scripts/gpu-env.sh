# Sourced by scripts/gpu-check.sh and scripts/gpu-sweep.sh on the GPU machine:
# unpacks target/gpu-bundle into $WORK, finds the CUDA 13 libraries (a system
# toolkit or NVIDIA's Python wheels) for LD_LIBRARY_PATH, and points
# ../shared/data at the digits carried in the bundle.
BUNDLE=target/gpu-bundle
WORK="${WORK:-/tmp/ebda-gpu}"
EBDA="$WORK/bin/ebda"
if [ ! -x "$EBDA" ]; then
  mkdir -p "$WORK"
  xz -dc "$BUNDLE/payload.tar.xz" | tar xf - -C "$WORK" || { echo "cannot unpack $BUNDLE/payload.tar.xz"; exit 1; }
fi
cublas=$(find /usr/local/cuda*/lib64 /usr/lib/x86_64-linux-gnu /opt /usr/local/lib /usr/lib/python3* \
  -name 'libcublas.so.13' 2>/dev/null | head -n1)
[ -n "$cublas" ] || { echo "libcublas.so.13 not found on this machine"; exit 1; }
for lib in libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcudart.so.13; do
  d=$(dirname "$(find "$(dirname "$(dirname "$cublas")")" /usr/local/cuda*/lib64 -name "$lib" 2>/dev/null | head -n1)")
  LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
export LD_LIBRARY_PATH
if [ ! -d ../shared/data ]; then mkdir -p ../shared && ln -sfn "$PWD/$BUNDLE/data" ../shared/data; fi
