#!/usr/bin/env bash
# The multi-GPU runs (issue #20 on `nvidia-h200-x2`; its `rl` section is issue #21's comparison on
# `nvidia-h200-x4`): builds tidal, runs the gpu
# tests, then every benchmark of the run, each with its baseline in the same run, into $OUT
# (or /tmp/device_x2). Multicast stays off in every process (it can take the host's GPUs out).
# Usage on the device: tools/device_x2.sh [sections...]   sections: tests wsync train rl (default: all)
# One GPU is enough for `tests` and the inproc/ipc paths of `wsync`; nccl, train and rl need two.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-/tmp/device_x2}"
mkdir -p "$out"
build="${BUILD_DIR:-$root/build-device}"
sections="${*:-tests wsync train rl}"
gpus="$(nvidia-smi -L 2>/dev/null | wc -l)"
{
  date -u
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
  nvidia-smi topo -m || true
} >"$out/machine.txt" 2>&1
echo "gpus: $gpus; sections: $sections" | tee -a "$out/machine.txt"

# The benchmarks first (they need only the binary), the gpu tests last.
"$root/tools/device_build.sh" tidal >"$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
export LD_LIBRARY_PATH="/tmp/debroot/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
tidal="$build/bin/tidal"
has() { [[ " $sections " == *" $1 "* ]]; }
run() {  # name, command...: logs the command, its output and its exit code
  local name="$1"; shift
  echo "== $name: $*" | tee -a "$out/commands.txt"
  local t0=$SECONDS
  "$@" >"$out/$name.json" 2>"$out/$name.log"
  local rc=$?
  echo "   rc=$rc $((SECONDS - t0))s" | tee -a "$out/commands.txt"
  tail -3 "$out/$name.log"
}

if has wsync; then
  paths="inproc,ipc"
  [ "$gpus" -ge 2 ] && paths="inproc,ipc,nccl"
  run wsync_1.5b "$tidal" bench weight-sync --shape 1.5b --paths "$paths" --iters 5 --warmup 2
  run wsync_7b "$tidal" bench weight-sync --shape 7b --paths "$paths" --iters 5 --warmup 2
fi
if has train && [ "$gpus" -ge 2 ]; then
  # tidal's sharded trainer, then PyTorch FSDP2 on the same shape and batch, in one invocation
  # (the JSON has both, "speedup_vs_baseline" and each side's MFU).
  run train_1.5b "$tidal" bench train --shape 1.5b --world 2 --seqs 8 --seq-len 2048 --iters 5 --warmup 2 \
    --checkpointing false --fsdp2-python python3 --fsdp2-script "$root/tools/bench/fsdp2_train.py"
fi
if has rl && [ "$gpus" -ge 2 ]; then
  # The GPU recipe on every GPU of the machine under each pool policy, same seed, warm-up and
  # steps (RL_SFT warm-up steps, RL_STEPS RL steps, RL_LIMIT seconds per run): static splits the
  # GPUs half rollout, half train; colocated puts trainer and engine on each; elastic starts as
  # static and moves tags (elastic_resize also grows/shrinks the train group). On a 4-GPU machine
  # this is issue #21's comparison; RL_OVERRIDES adds recipe overrides. RL_RECIPE picks another
  # recipe; RL_PLUGIN=1 builds the example plugin (envs/examples/reverse_string) and points
  # env.plugin at it, for the long-tailed workload:
  #   RL_RECIPE=recipes/gpu/reverse_longtail.yaml RL_PLUGIN=1 tools/device_x2.sh rl
  base="$root/${RL_RECIPE:-recipes/gpu/arithmetic_colocated.yaml}"
  plugin=()
  if [ -n "${RL_PLUGIN:-}" ]; then
    cmake -S "$root/envs/examples/reverse_string" -B "$build/plugins/reverse_string" -DCMAKE_BUILD_TYPE=Release \
      >>"$out/build.log" 2>&1 && cmake --build "$build/plugins/reverse_string" >>"$out/build.log" 2>&1 \
      || { echo "plugin build failed (build.log)"; exit 1; }
    plugin=("env.plugin=$build/plugins/reverse_string/libreverse_string.so")
  fi
  half=$((gpus / 2))
  common=(seed=1 "warmup.sft.steps=${RL_SFT:-150}" "train.steps=${RL_STEPS:-80}" eval.every=40 --quiet ${RL_OVERRIDES:-})
  declare -A pools=(
    [static]="pool.tags.rollout=$((gpus - half)) pool.tags.train=$half pool.policy=static"
    [colocated]="pool.tags.rollout=$gpus pool.tags.train=0 pool.policy=colocated"
    [elastic]="pool.tags.rollout=$((gpus - half)) pool.tags.train=$half pool.policy=elastic"
    [elastic_resize]="pool.tags.rollout=$((gpus - half)) pool.tags.train=$half pool.policy=elastic pool.elastic.resize=true")
  for p in ${RL_POLICIES:-static colocated elastic elastic_resize}; do
    # shellcheck disable=SC2086  # the pool overrides are words on purpose
    run "rl_$p" timeout "${RL_LIMIT:-140}" "$tidal" run "$base" "run_dir=$out/runs/$p" "pool.devices=cuda:0-$((gpus - 1))" \
      ${pools[$p]} "${plugin[@]}" "${common[@]}"
  done
fi
if has tests; then
  "$root/tools/device_build.sh" tidal_weight_sync_tests tidal_weight_sync_gpu_tests tidal_tools_gpu_tests \
    >>"$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
  run weight_sync_tests ctest --test-dir "$build" -L weight_sync --output-on-failure
  run gpu_tests ctest --test-dir "$build" -L gpu --output-on-failure \
    -R "${TIDAL_GPU_TESTS:-BucketKernelsGpu|BroadcastTransferGpu|BenchWeightSyncGpu}"
fi
echo "done; results in $out"
