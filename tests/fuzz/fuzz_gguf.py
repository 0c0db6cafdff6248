"""Fuzz the GGUF readers: one file, read the four ways a user can read it.

Each input is written to one file and opened, in order, as rwkvfast.gguf_metadata (header,
metadata, tensor table), a Tokenizer (its tokenizer.ggml.* arrays; when it loads, a short text
is encoded and decoded), a Model (the loader's shape and type checks; when it loads, one forward
of two tokens on a new state) and State.load against a small fixed model (a state file's
tensors). A malformed file may only raise ValueError or OSError; anything else escaping, or a
native crash, is a bug.

    python tests/fuzz/fuzz_gguf.py -runs=1000000                      # atheris, plain build
    RWKVFAST_SANITIZE=fuzz tools/sanitize.sh --exec python tests/fuzz/fuzz_gguf.py -runs=1000000
"""
from __future__ import annotations

import tempfile
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import main, scratch_dir  # noqa: E402

import rwkvfast  # noqa: E402
from rwkvfast.testing import make_model  # noqa: E402

# Tiny shapes, so a loaded model's forward costs microseconds: C=32 with two heads of 16, one
# layer, LoRA dims of 4. Every model seed has this shape unless it says otherwise.
TINY = dict(n_layer=1, n_embd=32, head_size=16, n_ffn=32, lora_mix=4, lora_decay=4)

_dir: Path | None = None
_small: rwkvfast.Model | None = None


def _workdir() -> Path:
    """This process's folder for the input file (in memory where there is one: every input is
    written once and read up to four times), made on first use, not at import."""
    global _dir
    if _dir is None:
        _dir = scratch_dir("fuzz_gguf")
    return _dir


def _small_model() -> rwkvfast.Model:
    """The model every input is loaded as a state of (the state seed has its shape)."""
    global _small
    if _small is None:
        path = make_model(_workdir() / "small.gguf", **TINY, vocab=8, tokenizer=False, seed=7)
        _small = rwkvfast.Model(path, n_threads=1)
    return _small


def seeds() -> list[bytes]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        # with a World-like vocabulary and chat template (the smallest vocabulary it writes)
        out.append(make_model(d / "f16.gguf", **TINY, vocab=257, dtype="F16", seed=1).read_bytes())
        out.append(make_model(d / "f32.gguf", **TINY, vocab=16, tokenizer=False, seed=2).read_bytes())
        # older files' separate lerp tensors, two layers with rescaling between them
        out.append(make_model(d / "bf16.gguf", **{**TINY, "n_layer": 2}, vocab=16, dtype="BF16",
                              tokenizer=False, lerp_layout="separate", rescale_every=1, seed=3).read_bytes())
        # quantized block formats: C=32 takes the 32-wide blocks; the K-quants need rows of 256
        for t in ("Q8_0", "Q4_1", "Q5_0"):
            rwkvfast.quantize(d / "f32.gguf", d / f"{t}.gguf", t, n_threads=1)
            out.append((d / f"{t}.gguf").read_bytes())
        make_model(d / "wide.gguf", n_layer=1, n_embd=256, head_size=64, n_ffn=256, lora_mix=1,
                   lora_decay=1, vocab=4, tokenizer=False, seed=4)
        rwkvfast.quantize(d / "wide.gguf", d / "Q2_K.gguf", "Q2_K", n_threads=1)
        out.append((d / "Q2_K.gguf").read_bytes())
        # a state of the small model, after a forward so its values are not all zero
        small = _small_model()
        state = small.new_state()
        small.forward([1, 2, 3], state)
        state.save(d / "state.gguf")
        out.append((d / "state.gguf").read_bytes())
    # broken ones: nothing, a bare magic, a header cut inside the metadata
    out += [b"", b"GGUF", out[0][:100]]
    return out


def one_input(data: bytes) -> None:
    path = _workdir() / "input.gguf"
    path.write_bytes(data)
    try:
        rwkvfast.gguf_metadata(path)
    except (ValueError, OSError):
        pass
    try:
        tok = rwkvfast.Tokenizer(path)
        # a vocabulary without some byte's token cannot encode it: a ValueError naming the byte
        tok.decode(tok.encode("Hello, world! \u00e9\u4e2d"))
    except (ValueError, OSError):
        pass
    try:
        with rwkvfast.Model(path, n_threads=1) as m:
            v = m.n_vocab
            m.forward([1 % v, v - 1], m.new_state())
    except (ValueError, OSError):
        pass
    try:
        rwkvfast.State.load(path, _small_model())
    except (ValueError, OSError):
        pass


if __name__ == "__main__":
    main(seeds, one_input)
