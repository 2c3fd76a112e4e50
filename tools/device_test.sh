#!/usr/bin/env bash
# Runs on the GPU machine: builds the tree (tools/device_build.sh) and runs every test labelled
# `gpu` (tests/<folder>/*_gpu_test.cpp), then any extra ctest arguments given.
# Usage on the device: tools/device_test.sh [ctest args...]   (logs under $OUT when set)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build-device}"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
"$root/tools/device_build.sh"
export LD_LIBRARY_PATH="/tmp/debroot/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
cd "$build"
log="${OUT:-/tmp}/device_test.log"
set -o pipefail
ctest -L gpu --output-on-failure "$@" 2>&1 | tee "$log"
