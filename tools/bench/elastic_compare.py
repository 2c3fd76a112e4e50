#!/usr/bin/env python3
"""static vs colocated vs elastic on the CPU box, in one script (issue #16's comparison).

For each workload (the quickstart recipe as committed, and a long-tail variant with skewed
response lengths) and each pool policy, runs `tidal run` once and reads the run's summary.json.
Prints and writes (--out) one JSON object: per workload and policy the RL-phase wall time, the
pool idle fraction in the RL phase, RL steps/s, the final greedy accuracy and the tag moves; and
per workload the speed-up of each policy over static measured in the same invocation (the
baseline). A benchmark, not a test: it asserts nothing; on a loaded machine the times are noisy
(say so when you quote them; docs/benchmarks.md gives the command and the machine).

  python3 tools/bench/elastic_compare.py [--tidal build/bin/tidal] [--steps N] [--out FILE]
      [--workloads quickstart,long_tail] [--policies static,colocated,elastic_lend,elastic]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Each entry: the recipe overrides that select it. `elastic` is the full policy (lending plus the
# train group resized at step boundaries, pool.elastic.resize); `elastic_lend` is elastic with
# the train group fixed (train devices only lent to rollout between steps), the pre-#16 behaviour.
POLICIES = {
    "static": ["pool.policy=static"],
    "colocated": ["pool.policy=colocated"],
    "elastic_lend": ["pool.policy=elastic", "pool.elastic.resize=false"],
    "elastic": ["pool.policy=elastic", "pool.elastic.resize=true"],
}
WORKLOADS = {
    "quickstart": [],
    # Skewed lengths: without `exact` a policy that keeps talking is not cut short by a zero
    # reward, and the token budget lets a few responses run 8x longer than the typical " 3".
    "long_tail": ["env.args.exact=false", "rollout.max_new_tokens=64"],
}


def run_one(tidal, workload, policy, steps, root):
    run_dir = os.path.join(root, f"{workload}-{policy}")
    args = ([tidal, "run", os.path.join(ROOT, "recipes/quickstart.yaml")] + POLICIES[policy] +
            [f"run_dir={run_dir}", "metrics.port=0", "checkpoint.every=0"] + WORKLOADS[workload])
    if steps:
        args += [f"train.steps={steps}", f"eval.every={steps}"]
    t0 = time.monotonic()
    proc = subprocess.run(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:])
        raise SystemExit(f"{workload}/{policy}: tidal run exited {proc.returncode}")
    with open(os.path.join(run_dir, "summary.json")) as f:
        s = json.load(f)
    moves = sum(d.get("tag_moves", 0) for d in s.get("devices", []))
    rl = s.get("rl_seconds", 0.0)
    return {
        "rl_seconds": rl,
        "rl_idle_fraction": s.get("rl_idle_fraction"),
        "steps": s.get("steps"),
        "steps_per_s": s.get("steps", 0) / rl if rl > 0 else None,
        "eval_accuracy_start": s.get("eval_accuracy_start"),
        "eval_accuracy_end": s.get("eval_accuracy_end"),
        "tag_moves": moves,
        "train_group": s.get("train_group"),
        "response_tokens_mean": s.get("response_tokens_mean"),
        "response_tokens_max": s.get("response_tokens_max"),
        "prompts_unaccounted": s.get("prompts", {}).get("unaccounted"),
        "process_wall_seconds": wall,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tidal", default=os.path.join(ROOT, "build/bin/tidal"))
    ap.add_argument("--steps", type=int, default=0, help="train.steps override (0: the recipe's)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    result = {"machine": os.uname().nodename, "cpus": os.cpu_count(),
              "load_avg_at_start": os.getloadavg()[0], "steps_override": a.steps, "workloads": {}}
    with tempfile.TemporaryDirectory(prefix="tidal-elastic-bench-") as root:
        for w in a.workloads.split(","):
            policies = a.policies.split(",")
            per = {}
            for p in policies:
                per[p] = run_one(a.tidal, w, p, a.steps, root)
                print(json.dumps({w: {p: per[p]}}), file=sys.stderr, flush=True)
            base = per["static"]["rl_seconds"] if "static" in per else None
            for p in policies:
                per[p]["speedup_vs_static"] = base / per[p]["rl_seconds"] if base and per[p]["rl_seconds"] else None
            result["workloads"][w] = per
            print(json.dumps({w: per}, indent=1), flush=True)
    result["load_avg_at_end"] = os.getloadavg()[0]
    text = json.dumps(result, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
