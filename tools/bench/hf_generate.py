#!/usr/bin/env python3
"""HF transformers `generate` baseline for `tidal bench rollout` (run by it; prints one JSON line).

Reads the prompts tidal generated (JSON list of token-id lists, all the same length), loads the
checkpoint in the given dtype on cuda, runs one batched `generate` with exactly
--max-new-tokens new tokens per request (min_new_tokens = max_new_tokens: EOS ignored), after a
short warm-up, and reports output tokens per second of wall time (synchronised).
"""
import argparse
import json
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--max-new-tokens", type=int, required=True)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--temperature", type=float, default=1.0)
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    prompts = json.load(open(args.prompts))
    if len({len(p) for p in prompts}) != 1:
        raise SystemExit("hf_generate.py: prompts must share one length (no padding)")
    dtype = getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype).to("cuda").eval()
    ids = torch.tensor(prompts, dtype=torch.long, device="cuda")
    mask = torch.ones_like(ids)
    sample = args.temperature > 0
    kw = dict(do_sample=sample, pad_token_id=0, top_k=None, top_p=None)
    if sample:
        kw["temperature"] = args.temperature

    def run(x, m, n):
        with torch.inference_mode():
            return model.generate(input_ids=x, attention_mask=m, max_new_tokens=n,
                                  min_new_tokens=n, **kw)

    run(ids[:2], mask[:2], 4)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = run(ids, mask, args.max_new_tokens)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    new = (out.shape[1] - ids.shape[1]) * out.shape[0]
    print(json.dumps({"method": "transformers generate, one batch, " + args.dtype,
                      "requests": len(prompts), "output_tokens": int(new), "wall_s": wall,
                      "output_tok_per_s_wall": new / wall,
                      "decode_step_ms": 1000 * wall / args.max_new_tokens,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
