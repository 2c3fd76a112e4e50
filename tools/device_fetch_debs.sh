#!/usr/bin/env bash
# Run on the development machine: downloads the Debian 12 packages that the GPU machine lacks into
# .debs/ (git-ignored), to be carried with `device run` (carry: [".debs"]). OpenSSL, zlib and Brotli
# headers come along because core/httplib.h compiles httplib with the features Debian's library has.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/.debs" && cd "$root/.debs"
apt-get download libzmq5 libzmq3-dev cppzmq-dev libsodium23 libsodium-dev libpgm-5.3-0 libnorm1 libabsl-dev \
  libabsl20220623 nlohmann-json3-dev libcpp-httplib-dev libcpp-httplib0.11 libcli11-dev \
  prometheus-cpp-dev libprometheus-cpp-core1.0 libseccomp-dev libseccomp2 \
  libssl-dev libssl3 libbrotli-dev libbrotli1 zlib1g-dev
