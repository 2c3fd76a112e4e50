"""Letter counting over two turns: a multi-turn environment in Python.

The quickstart's task, played as an episode (`env.multi_turn: true`): the model answers; a
correct first answer earns 1.0 and ends the episode; a wrong one gets the observation
" no, again:" (a user turn) and one more try, which earns 0.5 when correct. So a policy gains
from both answering right at once and changing a wrong answer after the feedback.
recipes/examples/letter_count_retry.yaml trains it (docs/benchmarks.md has the measured run).

The task generator, split and scoring are letter_count.py's (imported: this file's folder is on
sys.path).
"""
import letter_count

KNOWN_ARGS = letter_count.KNOWN_ARGS | {"retry_reward"}


def _own(args):
    return {k: v for k, v in args.items() if k != "retry_reward"}


def init(args):
    unknown = set(args) - KNOWN_ARGS
    if unknown:
        raise ValueError("unknown env.args key(s) %s; known: %s" % (sorted(unknown), sorted(KNOWN_ARGS)))
    letter_count.init(_own(args))


def reset(seed, split, args):
    return letter_count.reset(seed, split, _own(args))


def score(hidden, response, args):
    # One turn judged alone (used when an episode is re-scored, and by `tidal env check`).
    return letter_count.score(hidden, response, _own(args))


def step(task, turn, args):
    task["turns"] = task.get("turns", 0) + 1
    judged = letter_count.score(task["hidden"], turn, _own(args))
    correct = judged["info"]["correct"]
    if task["turns"] == 1 and not correct:
        return {"observation": " no, again:", "observation_role": "user", "reward": 0.0, "done": False,
                "info": {"turn": 1}}
    reward = (1.0 if task["turns"] == 1 else float(args.get("retry_reward", 0.5))) if correct else 0.0
    return {"reward": reward, "done": True, "info": {"correct": correct, "turns": task["turns"]}}
