#!/usr/bin/env bash
# Builds `ebda` with --features cuda on a machine without a GPU or a CUDA
# install: the CUDA 13.0 user-space pieces come from the Python package index
# (NVIDIA's wheels), and linking uses a stub libcuda.so generated from the
# driver API's symbol names. The toolkit is cached outside the repository.
#
#   scripts/build-cuda.sh [--check] [extra cargo args...]
#
#   --check        compile only (`cargo check`-like: builds the library
#                  crates and binary in release but does not copy anything)
#   CUDA_COMPUTE_CAP   target compute capability (default 90: H100/H200)
#   EBDA_CUDA_CACHE    toolkit cache (default ~/.cache/ebda/cuda-13.0)
#   FEATURES           cargo features (default "cuda"; "cudnn" needs cuDNN too)
#
# The binary (target/release/ebda) needs libcuda.so.1 (the driver),
# libcublas.so.13, libcublasLt.so.13, libcurand.so.10 and libcudart.so.13 at
# load time; `scripts/cuda-libs.sh DIR` copies the toolkit's into DIR for a
# machine that has only the driver.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${EBDA_CUDA_CACHE:-$HOME/.cache/ebda/cuda-13.0}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
FEATURES="${FEATURES:-cuda}"

# NVIDIA's CUDA 13.0 wheels (all from the 13.0 release line).
WHEELS=(
  "nvidia-cuda-nvcc==13.0.88"
  "nvidia-nvvm==13.0.88"
  "nvidia-cuda-cccl==13.0.85"
  "nvidia-cuda-crt==13.0.88"
  "nvidia-cuda-runtime==13.0.96"
  "nvidia-cuda-nvrtc==13.0.88"
  "nvidia-curand==10.4.0.35"
  "nvidia-cublas==13.0.2.14"
)

if [ ! -f "$CACHE/.complete" ]; then
  echo "== installing the CUDA 13.0 toolkit wheels into $CACHE"
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  python3 -m pip install --quiet --no-deps --target "$CACHE/site" "${WHEELS[@]}"
  # The wheels unpack under site/nvidia/cu13 (or site/nvidia/<component>):
  # merge their bin/ include/ lib/ nvvm/ trees into one CUDA_HOME.
  HOME_DIR="$CACHE/cuda"
  mkdir -p "$HOME_DIR"/{bin,include,lib64,nvvm}
  while IFS= read -r -d '' root; do
    for sub in bin include lib nvvm; do
      [ -d "$root/$sub" ] || continue
      dest="$HOME_DIR/$sub"; [ "$sub" = lib ] && dest="$HOME_DIR/lib64"
      cp -a "$root/$sub/." "$dest/"
    done
  done < <(find "$CACHE/site/nvidia" -mindepth 1 -maxdepth 2 -type d \( -name cu13 -o -path '*/nvidia/*' \) -print0)
  chmod +x "$HOME_DIR"/bin/* "$HOME_DIR"/nvvm/bin/* 2>/dev/null || true
  # Unversioned names for the linker.
  for lib in cudart cublas cublasLt curand nvrtc; do
    so=$(ls "$HOME_DIR"/lib64/lib$lib.so.* 2>/dev/null | head -n1 || true)
    [ -n "$so" ] && ln -sf "$(basename "$so")" "$HOME_DIR/lib64/lib$lib.so"
  done
  # A link-time stub of the driver library: every cu* symbol the CUDA headers
  # declare, as an empty function. It is only linked against, never loaded.
  mkdir -p "$CACHE/stub"
  grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' "$HOME_DIR"/include/cuda.h | sort -u \
    | awk '{print "void " $1 "(void) {}"}' > "$CACHE/stub/cuda_stub.c"
  cc -shared -fPIC -o "$CACHE/stub/libcuda.so" "$CACHE/stub/cuda_stub.c" -Wl,-soname,libcuda.so.1
  ln -sf libcuda.so "$CACHE/stub/libcuda.so.1"
  touch "$CACHE/.complete"
fi

export CUDA_HOME="$CACHE/cuda" CUDA_PATH="$CACHE/cuda" CUDA_ROOT="$CACHE/cuda"
export PATH="$CUDA_HOME/bin:$PATH"
export LIBRARY_PATH="$CACHE/stub:$CUDA_HOME/lib64${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$CUDA_HOME/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUSTFLAGS="${RUSTFLAGS:-} -L $CACHE/stub -L $CUDA_HOME/lib64"
nvcc --version | tail -n 2

if [ "${1:-}" = "--check" ]; then
  shift
  echo "== cargo build --release --features $FEATURES (compile check, target-cuda/)"
  # The binary and every crate it links (all the CUDA code paths); not the
  # hub feature's crate, which has no device code and the heaviest build.
  CARGO_TARGET_DIR=target-cuda cargo build --release -p ebda --features "$FEATURES" "$@"
else
  echo "== cargo build --release --features $FEATURES"
  CARGO_TARGET_DIR=target-cuda cargo build --release --features "$FEATURES" --bins "$@"
  echo "built target-cuda/release/ebda (CUDA compute capability $CUDA_COMPUTE_CAP)"
fi
