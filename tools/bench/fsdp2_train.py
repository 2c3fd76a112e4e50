#!/usr/bin/env python3
"""PyTorch FSDP2 (`fully_shard`) baseline for `tidal bench train`: same model shape, batch and
precision, measured the same way. Run with torchrun, one process per GPU:

    torchrun --standalone --nproc_per_node 2 tools/bench/fsdp2_train.py --shape 1.5b

Model: transformers' Qwen2ForCausalLM from a Qwen2.5-shaped config, random init (fp32 masters).
Each layer and the root are wrapped with fully_shard, MixedPrecisionPolicy(param_dtype=bf16,
reduce_dtype=fp32). Per rank and step: --seqs x --seq-len random tokens, next-token loss (mean),
backward, grad-norm clip 1.0, AdamW (lr 1e-5, weight decay 0.1). Activation checkpointing as
--checkpointing (default off, as tidal's train.activation_checkpointing). MFU = 6 * parameters * tokens/s /
(989.4 TFLOP/s * GPUs). Prints rank 0's JSON.
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from transformers import Qwen2Config, Qwen2ForCausalLM

PEAK_BF16 = 989.4e12
SHAPES = {  # Qwen/Qwen2.5-1.5B and Qwen/Qwen2.5-7B config.json
    "1.5b": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True),
    "7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="1.5b", choices=sorted(SHAPES))
    p.add_argument("--seqs", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--checkpointing", default="false", choices=["true", "false"])
    p.add_argument("--profile", action="store_true", help="one more step under torch.profiler (rank 0 kernels)")
    a = p.parse_args()

    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    cfg = Qwen2Config(**SHAPES[a.shape], max_position_embeddings=32768, rope_theta=1e6, attention_bias=True,
                      use_cache=False)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(1)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg)
    params = sum(t.numel() for t in model.parameters())
    if a.checkpointing == "true":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1)
    torch.manual_seed(100 + rank)
    ids = torch.randint(0, cfg.vocab_size, (a.seqs, a.seq_len), device="cuda")
    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return loss

    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(a.warmup + a.iters):
        torch.cuda.synchronize()
        dist.barrier()
        t0 = time.perf_counter()
        loss = step()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    prof_table = None
    if a.profile:
        # One more step under torch.profiler (not timed): rank 0's device time per kernel, to set
        # beside `tidal bench train --profile`.
        from torch.profiler import ProfilerActivity, profile
        torch.cuda.synchronize()
        dist.barrier()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            loss = step()
        events = sorted(prof.key_averages(), key=lambda e: -e.device_time_total)
        total = sum(e.self_device_time_total for e in events)
        prof_table = {"device_ms": total / 1e3, "kernels": [
            {"name": e.key[:160], "count": e.count, "total_ms": e.self_device_time_total / 1e3}
            for e in sorted(events, key=lambda e: -e.self_device_time_total)[:40]]}
    times.sort()
    med = times[len(times) // 2]
    tokens = a.seqs * a.seq_len
    tps = world * tokens / (med / 1e3)
    out = {
        "system": f"PyTorch {torch.__version__} FSDP2 fully_shard",
        "shape": a.shape, "parameters": params, "world": world, "tokens_per_rank_per_step": tokens,
        "activation_checkpointing": a.checkpointing == "true",
        "step_ms": {"median": med, "min": times[0], "all": times},
        "tokens_per_s": tps, "mfu": 6.0 * params * tps / (PEAK_BF16 * world),
        "peak_allocated_gb": torch.cuda.max_memory_allocated() / 1e9,
        "peak_reserved_gb": torch.cuda.max_memory_reserved() / 1e9,
        "last_loss": float(loss),
    }
    if prof_table is not None:
        out["kernel_profile"] = prof_table
    if rank == 0:
        print(json.dumps(out), flush=True)  # one line: `tidal bench train --fsdp2-python` reads the last
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
