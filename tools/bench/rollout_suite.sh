#!/usr/bin/env bash
# The rollout benchmark suite of docs/benchmarks.md, on the GPU machine (one GPU), after
# tools/device_build.sh tidal. Each run prints one JSON object; logs go to ${OUT:-/tmp}/bench_*.json.
# Usage: tools/bench/rollout_suite.sh [shape ...]   (default: qwen2.5-0.5b; workloads per shape
# below; SUITE_SKIP_HF=1 skips the HF generate baseline, SUITE_WORKLOADS picks a subset of
# "fixed nano rl unfused nographs")
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export LD_LIBRARY_PATH="/tmp/debroot/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
out="${OUT:-/tmp}"
bin="${TIDAL_BIN:-$root/build-device/bin/tidal}"
[ -x "$bin" ] || bin="$(find "$root/build-device" -name tidal -type f -perm -u+x | head -1)"
shapes=("$@")
[ ${#shapes[@]} -eq 0 ] && shapes=(qwen2.5-0.5b)
workloads="${SUITE_WORKLOADS:-fixed nano rl}"
common=(--device cuda --dtype bfloat16 --max-seqs 256 --max-batch-tokens 16384 --temperature 1.0
        --gpu-memory-utilization 0.3)
for shape in "${shapes[@]}"; do
  ckpt="/tmp/ckpt-$shape"
  python3 tools/bench/make_random_checkpoint.py --shape "$shape" --out "$ckpt" || exit 1
  for w in $workloads; do
    log="$out/bench_${shape}_${w}.json"
    case "$w" in
      fixed) hf=(); [ -z "${SUITE_SKIP_HF:-}" ] && hf=(--hf-python python3)
             args=(--requests 256 --group-size 1 --prompt-len 512 --max-new-tokens 512 --naive-requests 1 "${hf[@]}") ;;
      nano)  args=(--requests 256 --group-size 1 --random-lengths 100:1024 --seed 0 --naive-requests 0) ;;
      rl)    args=(--requests 256 --group-size 8 --prompt-len 512 --max-new-tokens 512 --naive-requests 0) ;;
      # ablations on the fixed workload: ATen-op layers, no CUDA graphs
      unfused) args=(--requests 256 --group-size 1 --prompt-len 512 --max-new-tokens 512 --naive-requests 0 --fused-layers false) ;;
      nographs) args=(--requests 256 --group-size 1 --prompt-len 512 --max-new-tokens 512 --naive-requests 0 --cuda-graphs false) ;;
    esac
    echo "== $shape $w: $bin bench rollout --model-dir $ckpt ${common[*]} ${args[*]}"
    /usr/bin/time -f "wall %e s" "$bin" bench rollout --model-dir "$ckpt" "${common[@]}" "${args[@]}" \
      > "$log" 2> "$log.err"
    echo "exit $?"; tail -3 "$log.err"
    python3 - "$log" <<'PY'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception as e:
    print("no JSON:", e); sys.exit(0)
e, r = j["engine"], j["roofline"]
print(f"  tidal {e['output_tok_per_s_wall']:.0f} out tok/s, decode step {e['decode_step_ms']:.2f} ms "
      f"(batch {e['mean_decode_batch']:.0f}), roofline fraction {r['fraction']:.3f} "
      f"(decode {r['decode_fraction']:.3f}), prefix hit {e['prefix_cache_hit_rate']:.3f}, time {e['time_s']}")
if "hf" in j:
    print(f"  HF generate {j['hf']['output_tok_per_s_wall']:.0f} out tok/s; speedup {j.get('speedup_vs_hf_wall', 0):.1f}x")
if j.get("naive"):
    print(f"  naive match {j['naive']['outputs_match_engine']}/{j['naive']['requests']}")
PY
  done
done
