"""Letter counting written in Python: the quickstart's task as a tidal environment file.

Use it with `env.plugin: python:envs/examples/python_reward/letter_count.py` (a relative path is
resolved from the recipe file's folder, like `include:`); recipes/examples/python_letter_count.yaml
trains it. tidal runs this file in an env-worker process through its embedded-CPython bridge
(docs/plugins.md, "Environments in Python"):

  init(args)                              optional; raise to reject bad env.args before the run
  reset(seed, split, args) -> task dict   the same seed and split must give the same task
  score(hidden, response, args) -> reward (a float, or {"reward": ..., "info": {...}})
  step(task, turn, args) -> dict          optional, for multi-turn environments (not needed here)

`response` is the model's completion text only (no prompt), decoded without special tokens.
The training reward is what score() returns (step() for multi-turn runs); the run's accuracy
counts a response as correct when info["correct"] is true, else when the reward is >= 1.
"""
import random
import zlib

KNOWN_ARGS = {"min_len", "max_len", "alphabet", "letters", "exact", "eval_fraction"}


def _settings(args):
    unknown = set(args) - KNOWN_ARGS
    if unknown:
        raise ValueError("unknown env.args key(s) %s; known: %s" % (sorted(unknown), sorted(KNOWN_ARGS)))
    return (int(args.get("min_len", 3)), int(args.get("max_len", 8)), args.get("alphabet", "abcdefghr"),
            args.get("letters", "r"), float(args.get("eval_fraction", 0.1)))


def init(args):
    _settings(args)


def reset(seed, split, args):
    min_len, max_len, alphabet, letters, eval_fraction = _settings(args)
    rng = random.Random(seed)
    # Split by content: a string belongs to the eval split when its checksum says so, so the
    # train and eval splits never share a task whatever the seeds. (Not hash(): Python salts
    # string hashes per process, and every env worker must give the same task for a seed.)
    while True:
        word = "".join(rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len)))
        letter = rng.choice(letters)
        held_out = zlib.crc32((word + "/" + letter).encode()) % 1000 < eval_fraction * 1000
        if held_out == (split == "eval"):
            break
    count = word.count(letter)
    return {"prompt": "count %s in %s:" % (letter, word), "hidden": {"count": count}, "reference": " %d" % count}


def score(hidden, response, args):
    exact = bool(args.get("exact", True))
    text = response.strip()
    if exact:
        correct = text == str(hidden["count"])
    else:
        digits = "".join(c if c.isdigit() else " " for c in text).split()
        correct = bool(digits) and int(digits[0]) == hidden["count"]
    return {"reward": 1.0 if correct else 0.0, "info": {"correct": correct}}
