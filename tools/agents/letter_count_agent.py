#!/usr/bin/env python3
"""An external agent that trains a tidal policy through its OpenAI-compatible endpoint.

It plays letter counting ("count r in bachrgerr:" -> " 3") with the official `openai` client:
every task is answered by `--group-size` sessions (alternative attempts, reported with the same
"group" so that tidal trains them as one GRPO group); some sessions take two turns: the agent
continues the conversation token-exactly (the first call's prompt and completion ids, from
vLLM's "return_token_ids", then the question again, tokenized by /tokenize), so tidal merges
the two calls into one trajectory with the repeated question loss-masked; the second answer is
the one scored. Each session ends by POSTing its reward to /v1/sessions/{id}/reward.

    tidal run recipes/openai_agent.yaml &
    .venv/bin/python tools/agents/letter_count_agent.py --run-dir runs/openai-agent

The agent finds the endpoints in <run_dir>/openai_endpoints.json and spreads its sessions over
them; it stops when the run ends (the endpoints go away) or after --tasks tasks, and prints one
JSON line with what it did.
"""
import argparse
import concurrent.futures
import json
import os
import random
import sys
import time
import urllib.request

import openai


def wait_for_endpoints(run_dir, timeout):
    path = os.path.join(run_dir, "openai_endpoints.json")
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(path) as f:
                urls = [e["url"] for e in json.load(f)["endpoints"]]
            if urls:
                return urls
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"no endpoints in {path} after {timeout} s")


def answer_of(text):
    return text.strip()


def post_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def run_session(client, base_url, session_id, group, word, letter, two_turns, max_tokens):
    """One attempt at the task; returns the reward it reported."""
    prompt = f"count {letter} in {word}:"
    extra = {"session_id": session_id, "return_token_ids": True}
    out = client.completions.create(model="tidal-policy", prompt=prompt, max_tokens=max_tokens,
                                    temperature=1.0, extra_body=extra)
    text = out.choices[0].text
    if two_turns:
        # Second turn: everything so far, token-exact, then the question again.
        ids = out.choices[0].model_extra
        again = post_json(base_url[: -len("/v1")] + "/tokenize", {"prompt": "\n" + prompt})["tokens"]
        out = client.completions.create(model="tidal-policy",
                                        prompt=ids["prompt_token_ids"] + ids["token_ids"] + again,
                                        max_tokens=max_tokens, temperature=1.0, extra_body=extra)
        text = out.choices[0].text
    correct = answer_of(text) == str(word.count(letter))
    post_json(f"{base_url}/sessions/{session_id}/reward",
              {"reward": 1.0 if correct else 0.0, "group": group, "info": {"correct": correct}})
    return 1.0 if correct else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--tasks", type=int, default=0, help="stop after this many tasks (0: until the run ends)")
    ap.add_argument("--parallel-tasks", type=int, default=4)
    ap.add_argument("--two-turn-fraction", type=float, default=0.25)
    ap.add_argument("--min-len", type=int, default=3)
    ap.add_argument("--max-len", type=int, default=8)
    ap.add_argument("--alphabet", default="abcdefghr")
    ap.add_argument("--letter", default="r")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wait", type=float, default=300, help="seconds to wait for the endpoints")
    args = ap.parse_args()

    urls = wait_for_endpoints(args.run_dir, args.wait)
    clients = [openai.OpenAI(base_url=u, api_key="unused", max_retries=0, timeout=120) for u in urls]
    rng = random.Random(args.seed)
    stats = {"tasks": 0, "sessions": 0, "calls": 0, "reward_sum": 0.0, "errors": 0}
    started = time.time()

    def task(index, word):
        turns = random.Random(args.seed * 1000003 + index)  # per task: threads do not share it
        k = index % len(urls)
        rewards, calls = [], 0
        for s in range(args.group_size):
            two = turns.random() < args.two_turn_fraction
            calls += 2 if two else 1
            rewards.append(run_session(clients[k], urls[k], f"t{index}-s{s}", f"t{index}", word,
                                       args.letter, two, args.max_tokens))
        return rewards, calls

    index = 0
    with concurrent.futures.ThreadPoolExecutor(args.parallel_tasks) as pool:
        running = set()
        stop = False
        while not stop or running:
            while not stop and len(running) < args.parallel_tasks and (args.tasks == 0 or index < args.tasks):
                word = "".join(rng.choice(args.alphabet)
                               for _ in range(rng.randint(args.min_len, args.max_len)))
                running.add(pool.submit(task, index, word))
                index += 1
            if args.tasks and index >= args.tasks:
                stop = True
            done, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for f in done:
                try:
                    rewards, calls = f.result()
                except (openai.APIConnectionError, openai.InternalServerError, ConnectionError, OSError):
                    # The run ended (or the worker restarted): stop handing out tasks.
                    stats["errors"] += 1
                    stop = True
                    continue
                stats["tasks"] += 1
                stats["sessions"] += len(rewards)
                stats["calls"] += calls
                stats["reward_sum"] += sum(rewards)
    stats["mean_reward"] = stats["reward_sum"] / max(1, stats["sessions"])
    stats["seconds"] = round(time.time() - started, 2)
    print(json.dumps(stats), flush=True)
    return 0 if stats["sessions"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
