#!/usr/bin/env bash
# The README's main job: install, build, run the CPU quickstart recipe.
# Extra arguments are recipe overrides (key.path=value).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/tools/build.sh"
cd "$root"
# --overwrite: running the quickstart again replaces runs/quickstart/ (tidal refuses to mix runs).
exec "$build/bin/tidal" run --overwrite recipes/quickstart.yaml "$@"
