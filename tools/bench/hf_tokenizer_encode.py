#!/usr/bin/env python3
"""Baseline half of `tidal bench tokenizer`: HF `tokenizers` encode throughput on the same corpus.

Reads the documents (a JSON array of strings) that the tidal side wrote, and for each repeat
loads a fresh Tokenizer (so both sides start with a cold cache) and times only the loop that
encodes every document (add_special_tokens=False, one document per call, single thread).
Times are wall clock and process CPU (the development box is shared, so CPU seconds are the
steadier figure); RAYON_NUM_THREADS=1 keeps the Rust side on one thread so the two agree.
Prints one JSON object: best seconds, token count, and a checksum of all ids computed the
same way as the C++ side (h = h * 1000003 + id + 1 mod 2^64) so the two can be compared.
"""
import argparse
import json
import os
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tokenizers
from tokenizers import Tokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True, help="directory holding tokenizer.json")
    ap.add_argument("--corpus", required=True, help="JSON array of documents")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with open(args.corpus, encoding="utf-8") as f:
        docs = json.load(f)
    path = os.path.join(args.tokenizer, "tokenizer.json")
    best, best_cpu = float("inf"), float("inf")
    encodings = None
    for _ in range(args.repeat):
        tok = Tokenizer.from_file(path)
        start, start_cpu = time.perf_counter(), time.process_time()
        encodings = [tok.encode(d, add_special_tokens=False) for d in docs]
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    h, n = 0, 0
    mask = (1 << 64) - 1
    for e in encodings:
        for i in e.ids:
            h = (h * 1000003 + i + 1) & mask
        n += len(e.ids)
    print(json.dumps({"name": f"huggingface tokenizers {tokenizers.__version__} (python, single thread)",
                      "seconds": best, "cpu_seconds": best_cpu, "tokens": n, "checksum": str(h)}))


if __name__ == "__main__":
    main()
