"""`rwkvfast-chat`: chat (-cnv, the default) and completion (-no-cnv) with llama-cli's flags.

    rwkvfast-chat -m rwkv-6-world-7b-Q8_0.gguf -p "You are a helpful assistant" -cnv -t 8 -ngl 99 -n 500
    rwkvfast-chat -m rwkv-6-world-7b-Q8_0.gguf -p "User: What's mbti?\\n\\nAssistant:" -no-cnv -n 500

Chat mode keeps one running state: each turn feeds only its own text (rwkvfast.chat). The
header and timings go to stderr, the conversation or completion to stdout.
"""
from __future__ import annotations

import argparse
import codecs
import importlib
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import rwkvfast
from rwkvfast.cli.load import model_or_demo, open_model
from rwkvfast.chat import Chat
from rwkvfast.reasoning import Reasoning
from rwkvfast.generate import generate
from rwkvfast.sampler import LLAMA_DEFAULTS, RWKV_CHAT_DEFAULTS, RWKV_STATE_TUNED_DEFAULTS, Sampler
from rwkvfast.state import State

HELP_COMMANDS = """commands:
  /help         this text
  /reset        forget the conversation (back to the starting state)
  /regen        answer the last message again
  /save FILE    save the conversation state
  /load FILE    continue from a saved state
  /exit         quit (also Ctrl-D, or Ctrl-C at the prompt)
Ctrl-C during an answer stops it; the conversation continues from what was shown."""

_COLOR_USER, _COLOR_RESET, _DIM = "\033[32m", "\033[0m", "\033[2m"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rwkvfast-chat", formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description="Chat with, or complete text from, an RWKV-6 or RWKV-7 GGUF model "
                                             "(llama-cli's flags).", epilog=HELP_COMMANDS)
    a = ap.add_argument
    a("-m", "--model", default=None,
      help="RWKV-6 or RWKV-7 GGUF file (default: the demo model that ships with rwkvfast)")
    a("-p", "--prompt", default=None, help="chat: the system prompt; -no-cnv: the text to continue")
    a("-f", "--file", default=None, help="read the prompt from a file")
    a("-sys", "--system-prompt", default=None, help="system prompt (chat mode)")
    a("-n", "--n-predict", type=int, default=-1, help="tokens per answer (-1: until the answer ends)")
    a("-t", "--threads", type=int, default=None, help="threads (default: all cores)")
    a("-b", "--batch-size", type=int, default=512, help="prompt tokens processed together (default 512)")
    a("-ngl", "--n-gpu-layers", "--gpu-layers", type=int, default=0,
      help="layers on the Vulkan GPU (more than the model has: the output too)")
    a("-dev", "--device", type=int, default=None,
      help="Vulkan device index, as system_info lists them (default: $RWKVFAST_VK_DEVICE, else the first GPU; "
           "a CPU implementation such as llvmpipe only when named)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("-cnv", "--conversation", dest="conversation", action="store_true", default=True,
                      help="chat mode (default)")
    mode.add_argument("-no-cnv", "--no-conversation", dest="conversation", action="store_false",
                      help="completion mode: print the prompt and its continuation, then exit")
    a("--sampler", choices=("rwkv", "llama"), default="rwkv",
      help="rwkv: the official RWKV sampler (default); llama: llama.cpp's chain and defaults")
    a("--temp", type=float, default=None, help="temperature (0: greedy)")
    a("--top-k", type=int, default=None)
    a("--top-p", type=float, default=None)
    a("--min-p", type=float, default=None)
    a("--typical", type=float, default=None, help="locally typical sampling (llama sampler)")
    a("--repeat-penalty", type=float, default=None, help="llama sampler")
    a("--repeat-last-n", type=int, default=None, help="llama sampler")
    a("--presence-penalty", type=float, default=None)
    a("--frequency-penalty", type=float, default=None)
    a("--penalty-decay", type=float, default=None, help="rwkv sampler: per-token decay of the penalties")
    a("-s", "--seed", type=int, default=-1, help="random seed (-1: from the clock)")
    a("-r", "--reverse-prompt", action="append", default=[], help="stop generating at this text (repeatable)")
    esc = ap.add_mutually_exclusive_group()
    esc.add_argument("-e", "--escape", dest="escape", action="store_true", default=True,
                     help="process escapes (\\n, \\t, ...) in the prompt (default)")
    esc.add_argument("--no-escape", dest="escape", action="store_false")
    a("--ignore-eos", action="store_true", help="do not stop at token 0")
    a("--reasoning", choices=("auto", "on", "off"), default="auto",
      help="RWKV-7 G1 models think before answering: on ends each turn 'Assistant: <think', off 'Assistant: "
           "<think></think' (answer at once); auto (default): on for RWKV-7, plain turns for RWKV-6")
    a("--reasoning-budget", type=int, default=-1,
      help="as llama.cpp's: reasoning tokens at most, then the block is closed and the model answers "
           "(-1: no limit, the default; 0: no reasoning, as --reasoning off)")
    a("--hide-reasoning", action="store_true",
      help="do not print the reasoning (by default it is shown dimmed on a terminal, inside <think> ... "
           "</think> otherwise)")
    a("--color", action="store_true", help="color the user's input")
    a("--state", default=None, help="start from a state: an rwkvfast state file or a state-tuning .pth")
    a("--prompt-cache", default=None, help="save the state after the prompt here; reuse it when the prompt matches")
    a("-v", "--verbose", action="store_true")
    a("--version", action="version", version=f"rwkvfast {rwkvfast.__version__}")
    return ap


def _unescape(s: str) -> str:
    return codecs.decode(s.encode("latin-1", "backslashreplace"), "unicode_escape") if "\\" in s else s


def _sampler_params(args, tuned: bool):
    base = LLAMA_DEFAULTS if args.sampler == "llama" else (RWKV_STATE_TUNED_DEFAULTS if tuned else RWKV_CHAT_DEFAULTS)
    over = {k: v for k, v in dict(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                                  typical_p=args.typical, repeat_penalty=args.repeat_penalty,
                                  repeat_last_n=args.repeat_last_n, presence_penalty=args.presence_penalty,
                                  frequency_penalty=args.frequency_penalty,
                                  penalty_decay=args.penalty_decay).items() if v is not None}
    seed = args.seed if args.seed >= 0 else time.time_ns() & (2**64 - 1)
    return replace(base, seed=seed, **over)


class _Stats:
    def __init__(self):
        self.prompt_tokens = self.gen_tokens = 0
        self.prompt_s = self.gen_s = 0.0

    def add(self, r):
        self.prompt_tokens += r.prompt_tokens
        self.prompt_s += r.prompt_s
        self.gen_tokens += len(r.tokens)
        self.gen_s += r.gen_s

    def report(self, load_s: float) -> str:
        pp = self.prompt_tokens / self.prompt_s if self.prompt_s else 0.0
        tg = self.gen_tokens / self.gen_s if self.gen_s else 0.0
        return (f"\nrwkvfast: load time = {load_s * 1e3:10.2f} ms\n"
                f"rwkvfast: prompt eval = {self.prompt_s * 1e3:10.2f} ms / {self.prompt_tokens:5d} tokens "
                f"({pp:8.2f} tokens per second)\n"
                f"rwkvfast:        eval = {self.gen_s * 1e3:10.2f} ms / {self.gen_tokens:5d} tokens "
                f"({tg:8.2f} tokens per second)")


def _header(model, args) -> str:
    i = model.info
    size = os.path.getsize(model.path)
    return (f"rwkvfast {rwkvfast.__version__}: model {model.path!r} ({i['n_layer']} layers x {i['n_embd']}, "
            f"{i.get('file_type') or i['weight_type']}, {size / 2**30:.2f} GiB), threads {i.get('n_threads')}\n"
            f"system_info: {rwkvfast.system_info()}")


def _stream(pieces, out, hide_reasoning: bool = False) -> bool:
    """Print pieces as they come, the reasoning dimmed on a terminal (framed by <think> tags
    otherwise) or not at all; False if Ctrl-C stopped them."""
    tty = out.isatty()
    thinking = False

    def mode(reasoning: bool) -> None:
        nonlocal thinking
        if reasoning != thinking and not hide_reasoning:
            if tty:
                out.write(_DIM if reasoning else _COLOR_RESET + "\n")
            else:
                out.write("<think>\n" if reasoning else "\n</think>\n")
        thinking = reasoning

    try:
        for p in pieces:
            mode(isinstance(p, Reasoning))
            if not (thinking and hide_reasoning):
                out.write(p)
            out.flush()
    except KeyboardInterrupt:
        pieces.close()
        mode(False)
        out.write("\n")
        return False
    mode(False)
    return True


def _state_tuned(args) -> bool:
    """A state-tuning .pth gets the RWKV docs' lower top_p and penalties (our own state files do not)."""
    if not args.state:
        return False
    with open(args.state, "rb") as f:
        return f.read(2) == b"PK"


def _complete(model, args, prompt: str, state: State, stats: _Stats) -> int:
    sampler = Sampler(model.n_vocab, _sampler_params(args, _state_tuned(args)))
    ids = model.tokenizer.encode(prompt) if prompt else [0]
    logits = None
    if args.prompt_cache:
        state, logits = _prompt_cache(model, Path(args.prompt_cache), ids, state)
        ids = []
    g = generate(model, ids, state, sampler, max_tokens=args.n_predict, stop=args.reverse_prompt,
                 stop_on_eos=not args.ignore_eos, logits=logits)
    sys.stdout.write(prompt)
    sys.stdout.flush()
    _stream(g, sys.stdout)
    sys.stdout.write("\n")
    stats.add(g.result)
    return 0


def _prompt_cache(model, path: Path, ids: list[int], state: State):
    """llama-cli's --prompt-cache: the file holds the state after all prompt tokens but the last
    (PATH.tokens names the model and the prompt); when the prompt matches, only the last token is
    fed again. Returns (state after the prompt, its logits)."""
    key = f"{os.path.basename(model.path)} {os.path.getsize(model.path)}\n" + " ".join(map(str, ids))
    tokens = Path(str(path) + ".tokens")
    if path.exists() and tokens.exists() and tokens.read_text() == key:
        try:
            state = State.load(path, model)
            print(f"note: prompt cache {str(path)!r} matches: {len(ids) - 1} prompt tokens reused", file=sys.stderr)
            return state, model.forward(ids[-1:], state)
        except ValueError as e:
            print(f"note: prompt cache {str(path)!r} unusable ({e}); rebuilding it", file=sys.stderr)
    if len(ids) > 1:
        model.forward(ids[:-1], state)
    state.save(path)
    tokens.write_text(key)
    return state, model.forward(ids[-1:], state)


def _chat(model, args, system: str | None, state: State | None, stats: _Stats) -> int:
    chat = Chat(model, system=system, params=_sampler_params(args, _state_tuned(args)),
                max_tokens=args.n_predict, state=state, ban_eos=not args.ignore_eos, reasoning=args.reasoning,
                reasoning_budget=args.reasoning_budget)
    if args.reverse_prompt:
        print("note: -r stop strings apply in completion mode; chat answers end at a blank line", file=sys.stderr)
    if args.verbose:
        print(f"sampler: {chat.sampler!r}", file=sys.stderr)
    if chat.template_note:
        print(f"note: {chat.template_note}", file=sys.stderr)
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            importlib.import_module("readline")  # history and line editing for input()
        except ImportError:
            pass
        print("== chat mode: /help for commands, Ctrl-C stops an answer, Ctrl-D exits ==", file=sys.stderr)
    while True:
        try:
            if interactive:
                line = input(f"{_COLOR_USER if args.color else ''}> ")
                if args.color:
                    sys.stdout.write(_COLOR_RESET)
            else:
                line = sys.stdin.readline()
                if not line:
                    break
                line = line.rstrip("\n")
        except EOFError:
            break
        except KeyboardInterrupt:
            print(file=sys.stderr)
            break
        msg = line.strip()
        if not msg:
            continue
        if msg.startswith("/"):
            cmd, _, arg = msg.partition(" ")
            arg = arg.strip()
            if cmd in ("/exit", "/quit"):
                break
            if cmd == "/help":
                print(HELP_COMMANDS, file=sys.stderr)
            elif cmd == "/reset":
                chat.reset()
                print("(conversation reset)", file=sys.stderr)
            elif cmd == "/save" and arg:
                try:
                    chat.state.save(arg)
                    print(f"(state saved to {arg})", file=sys.stderr)
                except OSError as e:
                    print(f"error: {e}", file=sys.stderr)
            elif cmd == "/load" and arg:
                try:
                    chat.load_state(State.open(arg, model))
                    print(f"(state loaded from {arg})", file=sys.stderr)
                except (ValueError, OSError) as e:
                    print(f"error: {e}", file=sys.stderr)
            elif cmd == "/regen":
                try:
                    _stream(chat.regenerate(), sys.stdout, args.hide_reasoning)
                    for r in chat.last_results:
                        stats.add(r)
                    sys.stdout.write("\n")
                except ValueError as e:
                    print(f"error: {e}", file=sys.stderr)
            else:
                print(f"unknown command {cmd!r} (or a missing FILE); /help lists them", file=sys.stderr)
            continue
        _stream(chat.reply(msg), sys.stdout, args.hide_reasoning)
        for r in chat.last_results:
            stats.add(r)
        sys.stdout.write("\n")
        sys.stdout.flush()
        if args.verbose:
            print(f"[{r.prompt_tokens} prompt tokens at {r.prompt_tokens_per_s:.1f} t/s, {len(r.tokens)} generated "
                  f"at {r.gen_tokens_per_s:.1f} t/s, stop: {r.stop_reason}]", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        ap.error(f"argument -t/--threads: must be >= 1, got {args.threads}")
    if args.reasoning_budget < -1:
        ap.error(f"argument --reasoning-budget: must be -1 (no limit) or >= 0, got {args.reasoning_budget}")
    if not 1 <= args.batch_size <= 1 << 20:
        ap.error(f"argument -b/--batch-size: must be in 1..{1 << 20}, got {args.batch_size}")
    try:  # sampler values are checked before the model loads, as bad flags
        Sampler(2, _sampler_params(args, False))
    except ValueError as e:
        ap.error(str(e))
    prompt = args.prompt
    if args.file:
        try:
            prompt = Path(args.file).read_text(encoding="utf-8")
        except OSError as e:
            ap.error(f"argument -f/--file: {e}")
    if prompt is not None and args.escape:
        prompt = _unescape(prompt)
    t0 = time.perf_counter()
    try:
        model = open_model(model_or_demo(args.model), args.threads, args.batch_size, args.n_gpu_layers, args.device)
    except (ValueError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    load_s = time.perf_counter() - t0
    stats = _Stats()
    with model:
        print(_header(model, args), file=sys.stderr)
        state = None
        if args.state:
            try:
                state = State.open(args.state, model)
            except (ValueError, OSError) as e:
                print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
                return 1
        try:
            if args.conversation:
                system = args.system_prompt if args.system_prompt is not None else prompt
                rc = _chat(model, args, system, state, stats)
            else:
                rc = _complete(model, args, prompt or "", state or model.new_state(), stats)
        except ValueError as e:
            print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
            return 1
        print(stats.report(load_s), file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
