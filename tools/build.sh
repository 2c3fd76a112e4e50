#!/usr/bin/env bash
# Installs dependencies (tools/install_deps.sh), configures once, builds incrementally.
# Usage: tools/build.sh [target...]   (BUILD_DIR overrides build/, TIDAL_CUDA=OFF skips nvcc)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/tools/install_deps.sh"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/tidal-ccache}"
export CCACHE_BASEDIR="$root"
# CUDA kernels and NCCL paths compile wherever the toolkit is (it cannot run here, but must build).
cuda_default=OFF
[ -x /usr/local/cuda/bin/nvcc ] && cuda_default=ON
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DTIDAL_CUDA="${TIDAL_CUDA:-$cuda_default}" >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; exit 1; }
fi
jobs="${TIDAL_JOBS:-$(nproc)}"
if [ $# -gt 0 ]; then
  cmake --build "$build" -j "$jobs" --target "$@"
else
  cmake --build "$build" -j "$jobs"
fi
