#!/usr/bin/env bash
# The README's test command: install, build, run every GoogleTest suite through CTest.
# Extra arguments go to ctest (e.g. tools/test.sh -L core, tools/test.sh -R Recipe).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/tools/build.sh"
cd "$build"
ctest --output-on-failure -j "${TIDAL_TEST_JOBS:-2}" "$@"
