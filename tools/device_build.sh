#!/usr/bin/env bash
# Builds tidal on the GPU machine (Ubuntu 24.04, see ../shared/design/DEVICE.md). ZeroMQ, Abseil,
# httplib, CLI11, nlohmann-json and prometheus-cpp are missing there: their Debian 12 packages travel in .debs/
# (git-ignored; fill it here with tools/device_fetch_debs.sh) and are unpacked into /tmp/debroot,
# never into /. Usage on the device: tools/device_build.sh [targets...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build-device}"
prefix=/tmp/debroot
if [ ! -d "$prefix/usr" ]; then
  for f in "$root"/.debs/*.deb; do dpkg -x "$f" "$prefix"; done
fi
export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
torch_prefix="$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix/usr;$prefix/usr/lib/x86_64-linux-gnu/cmake;$torch_prefix" \
    -DCMAKE_INCLUDE_PATH="$prefix/usr/include" -DCMAKE_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu" \
    -DCMAKE_CXX_FLAGS="-idirafter $prefix/usr/include -idirafter $prefix/usr/include/x86_64-linux-gnu" \
    -DTIDAL_CUDA=ON -DTIDAL_PYTHON=python3
fi
cmake --build "$build" -j "$(nproc)" ${1:+--target "$@"}
