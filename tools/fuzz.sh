#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*_fuzz.cpp) with clang + ASan/UBSan into build-fuzz/
# and runs each for SECONDS (default 10) from its committed seed corpus (tests/fuzz/corpus/<t>/).
# New inputs go to build-fuzz/corpus/<t>/ (never into the committed seeds); a crash leaves its
# input in build-fuzz/artifacts/ and fails the script. Usage: tools/fuzz.sh [SECONDS] [TARGET...]
# CTest runs `tools/fuzz.sh 4` as the `fuzz_smoke` test (label fuzz).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds="${1:-10}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(recipe message tokenizer_json chat_template safetensors)
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (tools/install_deps.sh installs it)"; exit 1; }
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/tidal-ccache}"
export CCACHE_BASEDIR="$root"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root/tests/fuzz" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; exit 1; }
fi
cmake --build "$build" -j "${TIDAL_JOBS:-$(nproc)}" --target "${targets[@]/%/_fuzz}"
mkdir -p "$build/artifacts"
failed=()
total=0
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t"
  log="$build/$t.log"
  start=$(date +%s)
  # -rss_limit_mb: a parser that allocates without bound is a finding too.
  if "$build/${t}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
       "$build/corpus/$t" "$root/tests/fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz $t: ok, $runs inputs in ${seconds}s"
  else
    echo "fuzz $t: FAILED (input in $build/artifacts/):"
    grep -E 'ERROR|SUMMARY|runtime error|==[0-9]+==' "$log" | head -20
    failed+=("$t")
  fi
  total=$((total + $(date +%s) - start))
done
echo "fuzz: ${#targets[@]} targets, ${total} s of fuzzing, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
