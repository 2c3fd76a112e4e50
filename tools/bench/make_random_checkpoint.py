#!/usr/bin/env python3
"""Writes a random-weight HF checkpoint (config.json + safetensors) of a known model shape.

Used by `tidal bench rollout --model-dir` and its HF `generate` baseline, which then run on
the very same weights. Weights follow transformers' own init (normal(0, 0.02), ones for norms)
with a fixed seed; they are created on the GPU when one is present (fast for 7B shapes).

Usage: make_random_checkpoint.py --shape qwen2.5-0.5b --out DIR [--dtype bfloat16] [--seed 0]
"""
import argparse
import json
import os

SHAPES = {
    # name: (hidden, intermediate, layers, heads, kv_heads, vocab, tied)
    "qwen2.5-0.5b": (896, 4864, 24, 14, 2, 151936, True),
    "qwen2.5-1.5b": (1536, 8960, 28, 12, 2, 151936, True),
    "qwen2.5-3b": (2048, 11008, 36, 16, 2, 151936, True),
    "qwen2.5-7b": (3584, 18944, 28, 28, 4, 152064, False),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if os.path.exists(os.path.join(args.out, "config.json")):
        print(json.dumps({"out": args.out, "reused": True}))
        return
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    hidden, inter, layers, heads, kv, vocab, tied = SHAPES[args.shape]
    config = Qwen2Config(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab,
                         tie_word_embeddings=tied, rope_theta=1000000.0, rms_norm_eps=1e-6,
                         max_position_embeddings=32768, bos_token_id=151643,
                         eos_token_id=151643)
    torch.manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    model.save_pretrained(args.out, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"out": args.out, "shape": args.shape, "params": n, "dtype": args.dtype}))


if __name__ == "__main__":
    main()
