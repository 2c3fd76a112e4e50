#!/usr/bin/env python3
"""Writes the throughput traces the elastic-policy tests replay (tests/scheduler/traces/*.csv).

One row per train step, in the units the controller measures (tokens, busy device-seconds):
  step, train_tokens, train_device_seconds, rollout_tokens, rollout_device_seconds,
  batch_tokens, queued_tokens, dispatchable, loads (per-device groups in flight, ';'-separated)
train_device_seconds is normalised to one rank (seconds * n * scaling^(n-1)), so the per-device
rate does not depend on the split the trace was taken under.

The shapes come from measured runs, with seeded multiplicative noise:
- quickstart_cpu2: the CPU quickstart (docs/benchmarks.md): 16 prompts x 8 samples, ~28 tokens a
  sequence (~3,600 tokens a batch), 0.195 s a step with training the bottleneck and the rollout
  device 79% idle (train ~19k tok/s a device, rollout ~90k tok/s a device).
- rollout_bound4: 4 devices, long responses (rollout ~4k tok/s a device, train ~40k).
- long_tail4: 4 devices, skewed response lengths: each batch's last groups keep one device busy
  while the others have nothing to dispatch (loads like 1;0;0;0, dispatchable 0).
- balanced_noisy: 2 devices where split 1/1 and 2/0 are within a few percent, +-20% noise.
Regenerate: python3 tests/scheduler/traces/make_traces.py (deterministic).
recorded_quickstart_cpu2.csv is not made here: a real run wrote it (<run_dir>/elastic_trace.csv of
`tidal run recipes/quickstart.yaml pool.elastic.resize=true train.steps=150`).
"""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = ("step,train_tokens,train_device_seconds,rollout_tokens,rollout_device_seconds,"
          "batch_tokens,queued_tokens,dispatchable,loads")


def write(name, rows):
    with open(os.path.join(HERE, name + ".csv"), "w") as f:
        f.write(HEADER + "\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")


def trace(seed, steps, batch, train_rate, roll_rate, noise, queued, dispatchable, loads):
    rng = random.Random(seed)
    rows = []
    for s in range(steps):
        b = round(batch * (1 + rng.uniform(-0.05, 0.05)))
        tr = train_rate * (1 + rng.uniform(-noise, noise))
        rr = roll_rate * (1 + rng.uniform(-noise, noise))
        rows.append((s, b, round(b / tr, 5), b, round(b / rr, 5), b, queued(s, b), dispatchable(s),
                     loads(s)))
    return rows


write("quickstart_cpu2", trace(1, 40, 3600, 19000, 90000, 0.15, lambda s, b: 0, lambda s: 16,
                               lambda s: "0;2"))
write("rollout_bound4", trace(2, 40, 12000, 40000, 4000, 0.15, lambda s, b: 0, lambda s: 16,
                              lambda s: "0;0;4;4"))
# Long tail: the next batch is fully dispatched and only device 3 still decodes (every 2nd step).
write("long_tail4", trace(3, 40, 9000, 60000, 3000, 0.10, lambda s, b: round(0.5 * b),
                          lambda s: 0 if s % 2 else 4, lambda s: "0;0;0;1" if s % 2 else "0;2;2;2"))
# Near the crossing of the two splits: rollout needs ~0.95 of one rank's train time, so noise flips
# which split looks best from step to step.
write("balanced_noisy", trace(4, 60, 4000, 40000, 42000, 0.20, lambda s, b: 0, lambda s: 16,
                              lambda s: "0;2"))
