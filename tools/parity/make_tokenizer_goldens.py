#!/usr/bin/env python3
"""Writes golden cases for tidal's tokenizer tests, computed with Hugging Face's own libraries.

Outputs, next to the tokenizer files in DIR (default tests/fixtures/qwen3-tokenizer):
  extra_encodings.jsonl  {"text", "ids", "decoded"}: `tokenizers` encode (no special tokens
                         added; specials written in the text are recognised) and decode of those
                         ids ("decoded" differs from "text" only where NFC changed the input).
                         Hand-picked edge cases plus seeded random strings.
  decodings.jsonl        {"ids", "skip_special_tokens", "text"}: `tokenizers` decode of id
                         sequences, random ones included (partial UTF-8 -> U+FFFD).
  chat.jsonl             {"messages", "add_generation_prompt", "enable_thinking", "text", "ids"}:
                         transformers' apply_chat_template with the tokenizer_config's Jinja
                         template, and the encoding of the result.

Usage: .venv/bin/python tools/parity/make_tokenizer_goldens.py [DIR]
Deterministic: rerunning with the same library versions gives the same files.
"""
import json
import os
import random
import sys

import tokenizers
import transformers
from tokenizers import Tokenizer

HAND_CASES = [
    "",
    " ",
    "\n",
    "a",
    "Hello",
    " Hello world",
    "Hello  world   with    runs     of spaces",
    "trailing spaces   ",
    "   leading spaces",
    "line1\nline2\r\nline3\rline4",
    "\n\n\n\n",
    "para one.\n\n\npara two.\n \n  \n",
    "tabs\t\tand\t mixed \t whitespace\u00a0\u3000ideographic",
    "0 1 12 123 1234 12345 3.14159 1,000,000 -7 +8 1e10 0xFF ١٢٣ ½ ² Ⅻ",
    "phone 555-123-4567, date 2024-01-31T12:34:56Z",
    "Ünïcödé çà et là — “quotes” ‘single’ … « guillemets » ¿qué? ¡sí!",
    "e\u0301 cafe\u0301 A\u030a n\u0303 (decomposed: NFC composes them)",
    "\u1100\u1161\u11a8 Hangul jamo compose to 각",
    "Ω (U+2126 OHM) and Å (U+212B ANGSTROM) are NFC singletons",
    "ſ long s, 'ſ contraction, K kelvin",
    "中文分词测试：强化学习（RL）让模型学会推理。",
    "日本語とカタカナ、ひらがな、漢字の混在テキストです。",
    "한국어 텍스트와 English mixed 텍스트",
    "Русский текст, ελληνικά, עברית, العربية, हिन्दी, ไทย",
    "emoji 😀😃😄 flags 🇺🇸🇯🇵 skin 👍🏻👍🏿 family 👨‍👩‍👧‍👦 keycap 1️⃣",
    "zero\u200bwidth\u200cjoiners\u200dand\ufeffbom",
    "control \x00 \x01 \x07 \x1b[31m \x7f chars",
    "private use \ue000 and astral \U0001d54f \U00020000 \U0010fffd",
    "I'm you're he's we've they'll she'd it's DON'T WE'LL I'M She'S",
    "'s 't 're 've 'm 'll 'd ' s '",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>text<|im_end|>",
    "<think>\nstep 1\n</think>\n\nfinal",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
    "<|im_start|><|im_start|>nested <|im_sta rt|> broken <|im_end",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "code:\n```python\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n```\n",
    "    indented\n        more\n\t\ttabbed\n",
    "<html><body class=\"x\">&nbsp;&amp;</body></html>",
    "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$ and \\(a^2+b^2=c^2\\)",
    "!!!???...,,,;;;:::---___***",
    " !!! ??? ... \n!!!\n",
    "a" * 300,
    "ab" * 150,
    "字" * 200,
    "supercalifragilisticexpialidocious" * 5,
    "aGVsbG8gd29ybGQgdGhpcyBpcyBhIGxvbmcgYmFzZTY0IHN0cmluZyB0aGF0IGtlZXBzIGdvaW5nIGFuZCBnb2luZw==",
    "https://user:pw@example.com:8080/a/b?c=d&e=f#g mailto:x@y.z",
    "The answer is \\boxed{42}.",
    " " * 40 + "x",
    "\n" * 10 + "x" + "\r\n" * 5,
]

POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") + [" "] * 12 + list("\n\n\t\r") +
        list("0123456789") + list("'\"!?.,;:-_()[]{}<>/\\#$%&*+=@^`|~") +
        ["'s", "'t", "'re", "'ll", "<|im_start|>", "<|im_end|>", "<think>", "<|endoftext|>"] +
        list("éèêëàçñöüßøåæœ") + ["e\u0301", "a\u0308", "\u0301", "\u0327"] +
        list("中文日本語한국어ひらがなカタカナ") + list("αβγδЖЯשלוםمرحبا") +
        ["😀", "🚀", "👍🏽", "\u200d", "\u00a0", "\u3000", "\u2028", "\ufffd", "١", "½", "Ⅻ"])


def random_cases(rng, n):
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        out.append("".join(rng.choice(POOL) for _ in range(k)))
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {path}")


def chat_cases():
    sys_msg = {"role": "system", "content": "You are a careful math tutor."}
    convs = [
        ([{"role": "user", "content": "How many r in strawberry?"}], True, None),
        ([{"role": "user", "content": "How many r in strawberry?"}], False, None),
        ([sys_msg, {"role": "user", "content": "What is 17*23?"}], True, None),
        ([{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "What is 17*23?"},
          {"role": "assistant", "content": "391"}, {"role": "user", "content": "And 19*23?"}], True, None),
        ([sys_msg, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], False, None),
        ([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], True, None),
        # Reasoning in history: dropped for turns before the last user query, kept after it.
        ([{"role": "user", "content": "q1"},
          {"role": "assistant", "content": "<think>\nthinking one\n</think>\n\nanswer one"},
          {"role": "user", "content": "q2"},
          {"role": "assistant", "content": "<think>\nthinking two\n</think>\n\nanswer two"}], False, None),
        ([{"role": "user", "content": "q1"},
          {"role": "assistant", "content": "<think>\nthinking one\n</think>\n\nanswer one"},
          {"role": "user", "content": "q2"}], True, None),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "plain answer"}], False, None),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "\n\nleading newlines"}], False, None),
        ([{"role": "user", "content": "q"},
          {"role": "assistant", "content": "pre<think>\n\nr\n\n</think>\n\n\nans"}], False, None),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a </think> b </think> c"}], False, None),
        ([{"role": "user", "content": "Think less."}], True, False),
        ([{"role": "user", "content": "Think more."}], True, True),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}], False, False),
        ([{"role": "user", "content": "first"}, {"role": "system", "content": "mid-conversation system"},
          {"role": "user", "content": "second"}], True, None),
        ([{"role": "user", "content": "数一下这个字符串里有多少个t或r 😀"}], True, None),
        ([{"role": "user", "content": ""}], True, None),
        ([{"role": "system", "content": ""}, {"role": "user", "content": "u"}], True, None),
        ([{"role": "user", "content": "call a tool"}, {"role": "assistant", "content": "ok"},
          {"role": "tool", "content": "{\"result\": 1}"}, {"role": "tool", "content": "{\"result\": 2}"},
          {"role": "user", "content": "thanks"}], True, None),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
          {"role": "user", "content": "<tool_response>\nr\n</tool_response>"},
          {"role": "assistant", "content": "<think>\nkept because the last query is a tool response\n</think>\n\nb"}],
         False, None),
    ]
    return convs


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "qwen3-tokenizer")
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    print(f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__}")
    rng = random.Random(20261122)

    rows = []
    for text in HAND_CASES + random_cases(rng, 300):
        ids = tok.encode(text, add_special_tokens=False).ids
        rows.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    write_jsonl(os.path.join(d, "extra_encodings.jsonl"), rows)

    vocab = tok.get_vocab_size(with_added_tokens=True)
    decs = []
    seqs = [tok.encode(t, add_special_tokens=False).ids for t in HAND_CASES[20:35]]
    seqs += [s[1:-1] for s in seqs if len(s) > 2]  # cut mid-character at both ends
    seqs += [[rng.randrange(vocab) for _ in range(rng.randint(1, 30))] for _ in range(100)]
    seqs += [[151644, 872, 198, 6023, 151645], [151667, 198, 151668], [160000, 9707, -1]]
    for ids in seqs:
        for skip in (False, True):
            known = [i for i in ids if 0 <= i < vocab]  # HF rejects ids outside the vocab; tidal skips them
            decs.append({"ids": ids, "skip_special_tokens": skip, "text": tok.decode(known, skip_special_tokens=skip)})
    write_jsonl(os.path.join(d, "decodings.jsonl"), decs)

    hf = transformers.AutoTokenizer.from_pretrained(d)
    chats = []
    for messages, add_gen, thinking in chat_cases():
        kwargs = {} if thinking is None else {"enable_thinking": thinking}
        text = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_gen, **kwargs)
        chats.append({"messages": messages, "add_generation_prompt": add_gen, "enable_thinking": thinking,
                      "text": text, "ids": tok.encode(text, add_special_tokens=False).ids})
    write_jsonl(os.path.join(d, "chat.jsonl"), chats)


if __name__ == "__main__":
    main()
