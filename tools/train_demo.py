"""Train the demo model that ships in rwkvfast/data/demo: a small RWKV-6 on WordNet chats.

    pip install torch==2.13.0          # this script only; rwkvfast itself never imports torch
    apt-get install wordnet-base       # the corpus (tools/demo_corpus.py)
    python tools/train_demo.py --out build/demo [--steps 2200] [--threads 2]

Steps, each deterministic from --seed:
1. the corpus: tools/demo_corpus.py writes train.txt and heldout.txt;
2. the vocabulary: the 256 single bytes (so any text still encodes) and the World tokens that
   tokenizing train.txt with the full World vocabulary uses most, up to --vocab tokens with
   <s> (id 0), kept in World order and renumbered; written as a World vocabulary file;
3. training: the RWKV-6 ("x060") block exactly as BlinkDL's training code and rwkvfast's
   engine compute it (token shift, the data-dependent lerp through its LoRA, the decay LoRA,
   WKV6, GroupNorm by head, the gate; squared-ReLU channel mix), in plain torch on the CPU:
   WKV6 runs in chunks of CHUNK tokens with the decays as cumulative log sums, which is the
   recurrence exactly, not an approximation; after every step the decay exponent is kept at
   most W_MAX through the weights themselves (bound_decay), and a step whose loss or gradient
   is not finite is skipped and counted; every --probe-every steps it answers "what does w
   mean" for demo_corpus.PROBE_WORDS greedily and counts the answers that begin as taught;
4. export: the weights under BlinkDL's names to a .safetensors file, converted by
   rwkvfast.convert (the GGUF layout llama.cpp's converter writes) to F32 and Q8_0.
The held-out perplexity is then measured with rwkvfast's own engine (rwkvfast.perplexity).
To ship a new model, copy its rwkv6-demo-Q8_0.gguf to tests/data/demo/ (git keeps it there,
with the test models), put the first 24 KB of its heldout.txt there too, re-measure the bounds
in tests/test_demo.py, and rebuild: setup.py copies the model into rwkvfast/data/demo.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import demo_corpus  # noqa: E402

CHUNK = 16  # WKV6 tokens per chunk in training
SPAN = 60.0  # the largest exponent of a factor in the factored WKV6 chunk: e^+-60 fits float32
W_MAX = 2.0  # the bound kept on the decay exponent: w >= exp(-e^2) = 6.2e-4 per token, so half a
# chunk decays by at most e^-59, inside SPAN (see bound_decay)


# --------------------------------------------------------------------------- vocabulary --

def _tokenizer(vocab: list[bytes], path: Path):
    """A rwkvfast Tokenizer over `vocab` (ids 1..), through a GGUF holding only the vocabulary."""
    import rwkvfast
    from rwkvfast.convert.vocab import token_metadata
    from rwkvfast.gguf_writer import write_gguf
    write_gguf(path, [("general.architecture", "rwkv6")] + token_metadata(vocab, len(vocab) + 1), [])
    return rwkvfast.Tokenizer(path)


def choose_vocab(train_text: str, size: int, work: Path) -> list[bytes]:
    """Byte tokens plus the most used World tokens, in World order (ids 1.. of the result)."""
    from rwkvfast.convert.vocab import load_world_vocab
    world = load_world_vocab()
    tok = _tokenizer(world, work / "world-vocab.gguf")
    counts = Counter(tok.encode(train_text[: 8_000_000]))
    singles = {i + 1 for i, b in enumerate(world) if len(b) == 1}
    ranked = [i for i, _ in counts.most_common() if i not in singles and i != 0]
    keep = sorted(singles | set(ranked[: size - 1 - len(singles)]))
    return [world[i - 1] for i in keep]


def write_vocab_file(vocab: list[bytes], path: Path) -> None:
    """The World vocabulary file format: `id python-literal byte-length` per line."""
    lines = []
    for i, b in enumerate(vocab, 1):
        try:
            lit = repr(b.decode("utf-8"))
        except UnicodeDecodeError:
            lit = repr(b)
        lines.append(f"{i} {lit} {len(b)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------- model --

def build_model(torch, V: int, C: int, L: int, N: int, F: int, D: int, Dd: int):
    nn, fn = torch.nn, torch.nn.functional
    H = C // N

    class TimeMix(nn.Module):
        def __init__(self, i: int):
            super().__init__()
            r01, r1a0 = i / max(L - 1, 1), 1.0 - i / L
            ddd = torch.arange(C, dtype=torch.float32).reshape(1, 1, C) / C
            self.time_maa_x = nn.Parameter(1.0 - ddd ** r1a0)
            self.time_maa_w = nn.Parameter(1.0 - ddd ** r1a0)
            self.time_maa_k = nn.Parameter(1.0 - ddd ** r1a0)
            self.time_maa_v = nn.Parameter(1.0 - (ddd ** r1a0 + 0.3 * r01))
            self.time_maa_r = nn.Parameter(1.0 - ddd ** (0.5 * r1a0))
            self.time_maa_g = nn.Parameter(1.0 - ddd ** (0.5 * r1a0))
            self.time_maa_w1 = nn.Parameter(torch.zeros(C, 5 * D))
            self.time_maa_w2 = nn.Parameter(torch.empty(5, D, C).uniform_(-0.01, 0.01))
            n = torch.arange(C, dtype=torch.float32)
            self.time_decay = nn.Parameter((-6 + 5 * (n / (C - 1)) ** (0.7 + 1.3 * r01)).reshape(1, 1, C))
            self.time_decay_w1 = nn.Parameter(torch.zeros(C, Dd))
            self.time_decay_w2 = nn.Parameter(torch.empty(Dd, C).uniform_(-0.01, 0.01))
            self.time_faaaa = nn.Parameter((r01 * (1 - n / (C - 1)) + ((n + 1) % 3 - 1) * 0.1).reshape(H, N))
            self.receptance = nn.Linear(C, C, bias=False)
            self.key = nn.Linear(C, C, bias=False)
            self.value = nn.Linear(C, C, bias=False)
            self.gate = nn.Linear(C, C, bias=False)
            self.output = nn.Linear(C, C, bias=False)
            nn.init.zeros_(self.output.weight)
            self.ln_x = nn.GroupNorm(H, C, eps=64e-5)

        def forward(self, x):
            B, T, _ = x.shape
            xx = fn.pad(x, (0, 0, 1, -1)) - x  # the previous token's x, minus this one's
            xxx = x + xx * self.time_maa_x
            m = torch.tanh(xxx @ self.time_maa_w1).view(B * T, 5, D).transpose(0, 1)
            m = torch.bmm(m, self.time_maa_w2).view(5, B, T, C)
            mw, mk, mv, mr, mg = m.unbind(0)
            xw = x + xx * (self.time_maa_w + mw)
            xk = x + xx * (self.time_maa_k + mk)
            xv = x + xx * (self.time_maa_v + mv)
            xr = x + xx * (self.time_maa_r + mr)
            xg = x + xx * (self.time_maa_g + mg)
            r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
            g = fn.silu(self.gate(xg))
            w = self.time_decay + torch.tanh(xw @ self.time_decay_w1) @ self.time_decay_w2
            y = wkv6(torch, r.view(B, T, H, N), k.view(B, T, H, N), v.view(B, T, H, N),
                     -torch.exp(w.view(B, T, H, N)), self.time_faaaa)
            y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
            return self.output(y * g)

    class ChannelMix(nn.Module):
        def __init__(self, i: int):
            super().__init__()
            r1a0 = 1.0 - i / L
            ddd = torch.arange(C, dtype=torch.float32).reshape(1, 1, C) / C
            self.time_maa_k = nn.Parameter(1.0 - ddd ** r1a0)
            self.time_maa_r = nn.Parameter(1.0 - ddd ** r1a0)
            self.key = nn.Linear(C, F, bias=False)
            self.receptance = nn.Linear(C, C, bias=False)
            self.value = nn.Linear(F, C, bias=False)
            nn.init.zeros_(self.receptance.weight)
            nn.init.zeros_(self.value.weight)

        def forward(self, x):
            xx = fn.pad(x, (0, 0, 1, -1)) - x
            k = torch.relu(self.key(x + xx * self.time_maa_k)) ** 2
            return torch.sigmoid(self.receptance(x + xx * self.time_maa_r)) * self.value(k)

    class Block(nn.Module):
        def __init__(self, i: int):
            super().__init__()
            if i == 0:
                self.ln0 = nn.LayerNorm(C)
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.att, self.ffn = TimeMix(i), ChannelMix(i)

        def forward(self, x):
            if hasattr(self, "ln0"):
                x = self.ln0(x)
            x = x + self.att(self.ln1(x))
            return x + self.ffn(self.ln2(x))

    class RWKV6(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, C)
            nn.init.uniform_(self.emb.weight, -1e-4, 1e-4)
            self.blocks = nn.ModuleList(Block(i) for i in range(L))
            self.ln_out = nn.LayerNorm(C)
            self.head = nn.Linear(C, V, bias=False)
            nn.init.orthogonal_(self.head.weight, gain=0.5 * math.sqrt(V / C))

        def forward(self, idx):
            x = self.emb(idx)
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln_out(x))

    return RWKV6()


def wkv6(torch, r, k, v, lw, u):
    """y_t[j] = sum_i r_t[i] (u[i] k_t[i] v_t[j] + S_{t-1}[i][j]),  S_t = diag(w_t) S_{t-1} + k_t^T v_t,
    from a zero state; lw = log w. In chunks of CHUNK tokens: within one, the decay from token s
    to a later token t is exp(A_{t-1} - A_s), A the cumulative sum of lw (A_{t-1} is taken from
    the same sum, not as A_t - lw_t, so the exponent is never above 0 however fast the decay).
    It is factored as exp(A_{t-1} - R) exp(R - A_s) around R, the sum at the chunk's middle,
    which makes the chunk two matrix products while every factor lies within e^+-SPAN (float32
    holds them, and their gradients); a chunk where one does not is computed pair by pair
    instead (slower, never overflowing). Exact either way."""
    B, T, H, N = r.shape
    S = r.new_zeros(B, H, N, N)
    ys = []
    for c0 in range(0, T, CHUNK):
        rc, kc, vc, lc = (t[:, c0:c0 + CHUNK] for t in (r, k, v, lw))
        n = rc.shape[1]
        A = torch.cumsum(lc, dim=1)  # [B, n, H, N]: decay up to and including token t
        Ap = torch.cat([torch.zeros_like(A[:, :1]), A[:, :-1]], dim=1)  # up to t - 1
        y = torch.einsum("bthi,bhij->bthj", rc * torch.exp(Ap), S)
        earlier = torch.tril(torch.ones(n, n, dtype=torch.bool), diagonal=-1)  # s < t
        R = A[:, n // 2 - 1: n // 2] if n > 1 else A[:, :1]
        reach = torch.maximum(Ap[:, 0] - R[:, 0], R[:, 0] - A[:, -1])  # the largest exponent either way
        if float(reach.detach().max()) < SPAN:
            rq = (rc * torch.exp(Ap - R)).permute(0, 2, 1, 3)  # [B, H, t, N]
            kq = (kc * torch.exp(R - A)).permute(0, 2, 3, 1)  # [B, H, N, s]
            att = (rq @ kq).masked_fill(~earlier, 0.0)  # [B, H, t, s]
            y = y + (att @ vc.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        else:
            expo = Ap[:, :, None] - A[:, None, :]  # [B, t, s, H, N], never above 0 where s < t
            expo = torch.where(earlier[None, :, :, None, None], expo, torch.full_like(expo, -math.inf))
            att = torch.einsum("bthi,bshi,btshi->btsh", rc, kc, torch.exp(expo))
            y = y + torch.einsum("btsh,bshj->bthj", att, vc)
        y = y + torch.einsum("bthi,hi,bthi->bth", rc, u, kc)[..., None] * vc
        ys.append(y)
        tail = torch.exp(A[:, -1:] - A)  # decay from each token to the chunk's end
        S = torch.exp(A[:, -1])[..., None] * S + torch.einsum("bshi,bshj->bhij", kc * tail, vc)
    return torch.cat(ys, dim=1)


def bound_decay(torch, model) -> None:
    """Keep every decay exponent time_decay + tanh(.) @ time_decay_w2 at most W_MAX, exactly (tanh
    is within +-1, so the sum of |w2| bounds that term): lower time_decay where the bound is
    over. The engine computes the same exponent from the same weights, so the bound holds there
    too, and the factored WKV6 chunks never overflow (unbounded, the decay of a channel that
    learns to forget at once runs to -inf, and training to NaN)."""
    with torch.no_grad():
        for b in model.blocks:
            att = b.att
            top = att.time_decay + att.time_decay_w2.abs().sum(0)
            att.time_decay.sub_((top - W_MAX).clamp(min=0))


def state_dict_blink(model) -> dict[str, np.ndarray]:
    """The weights under BlinkDL's names (GroupNorm's are ln_x.weight/.bias already)."""
    return {k: v.detach().float().contiguous().numpy() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------- training --

def train(args) -> None:
    import torch
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    train_txt, held_txt = demo_corpus.build(out, seed=args.seed)
    text = train_txt.read_text(encoding="utf-8")
    vocab = choose_vocab(text, args.vocab, out)
    write_vocab_file(vocab, out / "demo_vocab.txt")
    tok = _tokenizer(vocab, out / "demo-vocab.gguf")
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    probes = demo_corpus.probes()
    print(f"corpus: {len(text)} bytes, {len(ids)} tokens ({len(text) / len(ids):.2f} bytes/token), "
          f"vocabulary {len(vocab) + 1}", flush=True)
    V = len(vocab) + 1
    model = build_model(torch, V, args.embd, args.layers, 64, int(args.embd * 3.5) // 32 * 32, 32, 64)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters", flush=True)
    if args.init:  # go on from an earlier run's export (same vocabulary: the same --seed)
        from rwkvfast.convert import read_safetensors
        saved = read_safetensors(args.init)
        model.load_state_dict({k: torch.from_numpy(t.f32().copy()) for k, t in saved.items()})
        print(f"init: {args.init}", flush=True)
    matrices = [p for n, p in model.named_parameters() if p.dim() >= 2 and "time_" not in n]
    others = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "time_" not in n)]
    opt = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.01}, {"params": others, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.99), eps=1e-8)
    rng = np.random.default_rng(args.seed if args.sample_seed is None else args.sample_seed)
    T, Bsz = args.ctx, args.batch
    log = []
    skipped = 0
    bound_decay(torch, model)
    t_train = time.time()
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        rows = [ids[s:s + T + 1] for s in rng.integers(0, len(ids) - T - 1, Bsz)]
        batch = torch.from_numpy(np.stack(rows))
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if not (math.isfinite(loss.item()) and math.isfinite(float(norm))):
            skipped += 1  # a step that would put NaN in the weights is left out (counted, and reported)
            print(f"step {step}: loss {loss.item()}, gradient norm {float(norm)}: skipped", flush=True)
            continue
        opt.step()
        bound_decay(torch, model)
        log.append(loss.item())
        if step % 25 == 0 or step == args.steps - 1:
            el = time.time() - t_train
            print(f"step {step:5d}  loss {np.mean(log[-25:]):.4f}  lr {lr:.2e}  {el / 60:.1f} min  "
                  f"{(step + 1) * Bsz * T / el:.0f} tokens/s", flush=True)
        if (step + 1) % args.probe_every == 0:
            right, answers = probe(model, tok, probes)
            print(f"probe: {right}/{len(answers)} common words answered as taught; "
                  + " | ".join(answers[:3]), flush=True)
    minutes = (time.time() - t_train) / 60
    right, answers = probe(model, tok, probes)
    print(f"probe: {right}/{len(answers)} common words answered as taught", flush=True)
    for w, a in zip(probes, answers):
        print(f"  {w}: {a}", flush=True)
    export(model, out, vocab, args, n_params, minutes, len(ids), skipped, right)
    print(f"done in {(time.time() - t_start) / 60:.1f} min", flush=True)


def probe(model, tok, words: dict[str, str]) -> tuple[int, list[str]]:
    """Greedy answers to `What does "w" mean?` for the probe words, and how many begin as the
    training text answers them (their first 40 characters): what the held-out loss cannot show,
    whether the model ties a word to its own definition."""
    import torch
    model.eval()
    answers, right = [], 0
    with torch.no_grad():
        for w, expected in words.items():
            ids = tok.encode(f'User: What does "{w}" mean?\n\nAssistant:')
            out: list[int] = []
            for _ in range(24):
                nxt = int(model(torch.tensor([ids + out]))[0, -1].argmax())
                if tok.decode([nxt]) == "\n\n":
                    break
                out.append(nxt)
            answer = tok.decode(out).strip()
            right += answer[:40] == expected[:40]
            answers.append(answer)
    model.train()
    return right, answers


def export(model, out: Path, vocab: list[bytes], args, n_params: int, minutes: float, n_tokens: int,
           skipped: int, probes_right: int) -> None:
    import rwkvfast
    from rwkvfast.convert import write_safetensors
    st = out / "rwkv6-demo.safetensors"
    tensors = state_dict_blink(model)
    write_safetensors(st, [(k, "F32", a.shape, (lambda a=a: [a])) for k, a in tensors.items()])
    for outtype in ("f32", "q8_0"):
        rwkvfast.convert(st, out / f"rwkv6-demo-{outtype.upper()}.gguf", outtype=outtype, model_name="rwkv6-demo",
                         vocab=out / "demo_vocab.txt", rescale_every=0, overwrite=True)
    check_against_engine(model, out / "rwkv6-demo-F32.gguf", out / "heldout.txt")
    info = {"parameters": n_params, "train_minutes": round(minutes, 1), "steps": args.steps, "batch": args.batch,
            "ctx": args.ctx, "tokens_seen": args.steps * args.batch * args.ctx, "corpus_tokens": n_tokens,
            "seed": args.seed, "threads": args.threads, "init": args.init, "sample_seed": args.sample_seed,
            "lr": args.lr, "skipped_steps": skipped, "probes_right": probes_right}
    (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info), flush=True)


def check_against_engine(model, gguf: Path, text_path: Path) -> float:
    """The exported file must compute what torch does: rwkvfast's logits against the model's on
    held-out text (float32 both; only the sum orders differ)."""
    import torch
    import rwkvfast
    with rwkvfast.Model(gguf) as m:
        ids = m.tokenizer.encode(text_path.read_text(encoding="utf-8")[:2000])[:200]
        ours = m.forward(ids, m.new_state(), all_logits=True)
    with torch.no_grad():
        theirs = model(torch.tensor([ids]))[0].numpy()
    diff = float(np.abs(ours - theirs).max())
    print(f"check: rwkvfast against torch on {len(ids)} held-out tokens: max |logit difference| {diff:.2e} "
          f"(largest logit {np.abs(theirs).max():.1f})", flush=True)
    if diff > 1e-3 * max(1.0, float(np.abs(theirs).max())):
        raise SystemExit("the exported model does not compute what was trained")
    return diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/demo")
    ap.add_argument("--steps", type=int, default=2200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="start from this .safetensors (an earlier run's export)")
    ap.add_argument("--probe-every", type=int, default=250, help="steps between probes of common words")
    ap.add_argument("--sample-seed", type=int, default=None, help="seed of the batches' positions (default --seed)")
    train(ap.parse_args())


if __name__ == "__main__":
    main()
