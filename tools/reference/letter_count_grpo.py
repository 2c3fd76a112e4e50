"""Reference (Python/PyTorch + transformers) SFT-then-GRPO loop on the letter_count task.

Used to choose the quickstart's model size and hyperparameters, and as the Python baseline that
tidal's quickstart is compared against. Same task shape as builtin:letter_count with a byte
tokenizer: prompt "count r in strawberry:" -> response " 3" + eos.
"""
import argparse, json, random, time
import torch
import torch.nn.functional as F
from transformers import Qwen2Config, Qwen2ForCausalLM

EOS = 256
VOCAB = 260


LETTERS = None


def make_task(rng, alphabet, min_len, max_len):
    n = rng.randint(min_len, max_len)
    word = "".join(rng.choice(alphabet) for _ in range(n))
    letter = rng.choice(LETTERS or alphabet)
    return f"count {letter} in {word}:", str(word.count(letter))


def enc(s):
    return list(s.encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--alphabet", default="abcdefgh")
    ap.add_argument("--min-len", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=12)
    ap.add_argument("--sft-steps", type=int, default=200)
    ap.add_argument("--sft-lr", type=float, default=3e-3)
    ap.add_argument("--sft-batch", type=int, default=32)
    ap.add_argument("--rl-steps", type=int, default=100)
    ap.add_argument("--rl-lr", type=float, default=1e-4)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--temp", type=float, default=1.0)
    ap.add_argument("--clip", type=float, nargs=2, default=[0.2, 0.28])
    ap.add_argument("--eval-n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sft-eval-every", type=int, default=0)
    ap.add_argument("--letters", default="")
    a = ap.parse_args()
    global LETTERS
    LETTERS = a.letters or None
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=a.hidden, intermediate_size=4 * a.hidden,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads,
                      num_key_value_heads=a.kv_heads, max_position_embeddings=64,
                      tie_word_embeddings=True, eos_token_id=EOS, bos_token_id=EOS, pad_token_id=EOS)
    model = Qwen2ForCausalLM(cfg)
    eval_rng = random.Random(10_000 + a.seed)
    eval_set = [make_task(eval_rng, a.alphabet, a.min_len, a.max_len) for _ in range(a.eval_n)]

    def pad_batch(seqs):
        L = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), L), EOS, dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        return ids, mask

    @torch.no_grad()
    def generate(prompts, temp, max_new=4):
        # Prompts of equal length are batched together (a GRPO group shares its prompt), so no
        # padding is needed; decoding uses the KV cache.
        outs = [None] * len(prompts)
        by_len = {}
        for i, p in enumerate(prompts):
            by_len.setdefault(len(p), []).append(i)
        model.eval()
        for L, idx in by_len.items():
            ids = torch.tensor([prompts[i] for i in idx])
            if temp == 0:
                out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new,
                                     eos_token_id=EOS, pad_token_id=EOS)
            else:
                out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=temp, top_k=0,
                                     top_p=1.0, max_new_tokens=max_new, eos_token_id=EOS, pad_token_id=EOS)
            for j, i in enumerate(idx):
                gen = out[j, L:].tolist()
                if EOS in gen:
                    gen = gen[:gen.index(EOS) + 1]
                outs[i] = gen
        model.train()
        return outs

    def reward(gen, answer):
        txt = bytes(t for t in gen if t < 256).decode(errors="replace").strip()
        num = ""
        for ch in txt:
            if ch.isdigit():
                num += ch
            elif num:
                break
        return 1.0 if num == answer else 0.0

    def evaluate():
        gens = generate([enc(p) for p, _ in eval_set], 0)
        return sum(reward(g, ans) for g, (_, ans) in zip(gens, eval_set)) / len(eval_set)

    def logprobs_of(seqs, plen):
        ids, mask = pad_batch(seqs)
        logits = model(ids, attention_mask=mask).logits[:, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
        resp_mask = torch.zeros_like(lp)
        for i, (s, pl) in enumerate(zip(seqs, plen)):
            resp_mask[i, pl - 1:len(s) - 1] = 1
        return lp, resp_mask

    t0 = time.time()
    opt = torch.optim.AdamW(model.parameters(), lr=a.sft_lr, weight_decay=0.0)
    for step in range(a.sft_steps):
        batch = [make_task(rng, a.alphabet, a.min_len, a.max_len) for _ in range(a.sft_batch)]
        seqs = [enc(p) + enc(" " + ans) + [EOS] for p, ans in batch]
        plen = [len(enc(p)) for p, _ in batch]
        lp, m = logprobs_of(seqs, plen)
        loss = -(lp * m).sum() / m.sum()
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
        if a.sft_eval_every and (step + 1) % a.sft_eval_every == 0:
            print(json.dumps({"phase": "sft", "step": step + 1, "loss": round(loss.item(), 4), "eval_acc": evaluate(),
                              "time_s": round(time.time() - t0, 1)}), flush=True)
    acc0 = evaluate()
    print(json.dumps({"phase": "sft", "steps": a.sft_steps, "eval_acc": acc0, "time_s": round(time.time() - t0, 1)}), flush=True)

    opt = torch.optim.AdamW(model.parameters(), lr=a.rl_lr, weight_decay=0.0)
    for step in range(a.rl_steps):
        tasks = [make_task(rng, a.alphabet, a.min_len, a.max_len) for _ in range(a.prompts)]
        seqs, plen, adv, old = [], [], [], []
        rewards_all = []
        all_gens = generate([enc(p) for p, _ in tasks for _ in range(a.group)], a.temp)
        for k, (p, ans) in enumerate(tasks):
            pe = enc(p)
            gens = all_gens[k * a.group:(k + 1) * a.group]
            r = torch.tensor([reward(g, ans) for g in gens])
            rewards_all += r.tolist()
            A = (r - r.mean()) / (r.std() + 1e-6)
            for g, av in zip(gens, A.tolist()):
                seqs.append(pe + g); plen.append(len(pe)); adv.append(av)
        with torch.no_grad():
            old_lp, m = logprobs_of(seqs, plen)
        lp, m = logprobs_of(seqs, plen)
        ratio = torch.exp(lp - old_lp)
        A = torch.tensor(adv)[:, None]
        obj = torch.minimum(ratio * A, ratio.clamp(1 - a.clip[0], 1 + a.clip[1]) * A)
        loss = -(obj * m).sum() / m.sum()
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
        if (step + 1) % 10 == 0 or step == a.rl_steps - 1:
            acc = evaluate()
            print(json.dumps({"phase": "rl", "step": step + 1, "reward": sum(rewards_all) / len(rewards_all),
                              "eval_acc": acc, "time_s": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
