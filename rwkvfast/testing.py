"""testing.py — synthetic RWKV-6 and RWKV-7 GGUF models for tests and benchmarks, and F32 -> F16/BF16 retyping.

`make_model` writes a random RWKV-6 model (`make_model7` an RWKV-7 one) laid out exactly as
llama.cpp's convert_hf_to_gguf.py lays out a real one (metadata keys and value types, tensor
names, ggml shapes, tensor order, which tensors become F16/BF16); see shared/fixtures/README.md,
"GGUF layout". Weights are scaled like the fixtures' tiny model, so logits are not degenerate.
Data is streamed to the file, so a 1.6B-shaped model never sits in memory.

    >>> from rwkvfast.testing import make_model, retype_gguf
    >>> path = make_model(tmp_path / "tiny.gguf")                     # the fixture's shape, F32
    >>> retype_gguf(path, tmp_path / "tiny-bf16.gguf", "BF16")

`read_gguf` is a small pure-numpy GGUF reader (no `gguf` package needed) for test helpers.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .convert.to_gguf import size_label
from .gguf_reader import GGUFFile, GGUFTensor, read_gguf  # noqa: F401  (re-exported for tests)
from .gguf_writer import GGUFValueType, Array, F32, U32, bf16_to_f32, f32_to_bf16, ggml_type, write_gguf

# Per-layer matrices the converter stores as F16/BF16 (with token_embd and output); every
# other tensor (norms, lerps, decay, LoRA w1/w2, time_mix_first) stays F32 in every file type.
BIG_MATRICES = ("time_mix_key", "time_mix_value", "time_mix_receptance", "time_mix_gate",
                "time_mix_output", "channel_mix_key", "channel_mix_value", "channel_mix_receptance")
FILE_TYPES = {"F32": 0, "F16": 1, "BF16": 32}  # llama.h LLAMA_FTYPE_ALL_F32 / MOSTLY_F16 / MOSTLY_BF16
# retype targets: (ggml type of the big matrices, general.file_type)
RETYPES = {"F32": ("F32", 0), "F16": ("F16", 1), "BF16": ("BF16", 32),
           "F32-ROUNDED-F16": ("F32", 0), "F32-ROUNDED-BF16": ("F32", 0)}

# The converter's "rwkv-world" template (the fixtures' tokenizer.chat_template, verbatim).
CHAT_TEMPLATE = (
    "{%- if not add_generation_prompt is defined -%}\n    {%- set add_generation_prompt = true -%}\n"
    "{%- endif -%}\n{%- set ns = namespace(system_prompt='') -%}\n{%- for message in messages -%}\n"
    "    {%- if message['role'] == 'system' -%}\n        {%- set ns.system_prompt = message['content'] -%}\n"
    "    {%- endif -%}\n{%- endfor -%}\n{{bos_token}}\n{%- if ns.system_prompt != '' -%}\n"
    "{{- 'System: ' + ns.system_prompt + '\\n\\n' -}}\n{%- endif -%}\n{%- for message in messages -%}\n"
    "    {%- if message['role'] == 'user' -%}\n        {{- 'User: ' + message['content']|trim + '\\n\\n' -}}\n"
    "    {%- endif -%}\n    {%- if message['role'] == 'assistant' and message['content'] is  not none -%}\n"
    "        {%- set content = message['content'] -%}\n        {%- if '</think>' in content -%}\n"
    "            {%- set content = content.split('</think>')[-1] -%}\n        {%- endif -%}\n"
    "        {{- 'Assistant: ' + content|trim + '\\n\\n' -}}\n    {%- endif -%}\n{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n    {{- 'Assistant:' -}}\n"
    "    {%- if enable_thinking is defined and enable_thinking is false %}\n        {{- ' <think>\\n</think>' }}\n"
    "    {%- endif %}\n    {%- if enable_thinking is defined and enable_thinking is true %}\n"
    "        {{- ' <think>' }}\n    {%- endif %}\n{%- endif -%}")


def is_big_matrix(name: str) -> bool:
    """True for the tensors that F16/BF16 files store in 16 bits."""
    parts = name.split(".")
    if name in ("token_embd.weight", "output.weight"):
        return True
    return len(parts) == 4 and parts[0] == "blk" and parts[2] in BIG_MATRICES and parts[3] == "weight"


# ------------------------------------------------------------------------- vocabulary --

_WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at which "
          "but have an they you were her she there one all we their been has when who will more no if "
          "out so said what up its about into than them can only other new some could time these two "
          "may then do first any my now such like our over man me even most made after also did many "
          "before must through back years where much your way well down should because each just "
          "those people how too little state good very make world still own see men work long get here "
          "between both life being under never day same another know while last might us great old "
          "year off come since against go came right used take three hello Hello The This def return "
          "import class self print function const").split()
_EXTRA = ["é", "ü", "中", "文", "你好", "世界", "😀", "—", "’", "\\\\", "'\"", "\"'", "\r\n\r\n"]


def vocab_tokens(n: int) -> list[bytes]:
    """n token byte strings like the World vocab: "<s>", the 256 single bytes, then multi-byte tokens.

    Ids 257..267 are the World vocab's whitespace pairs, so "\\n\\n" is id 261 (the EOT token).
    Later tokens: " " + printable ASCII, common English words (with and without a leading space),
    some UTF-8 and quote/backslash tokens (to exercise escaping), then printable ASCII pairs and
    triples; all distinct.
    """
    out = [b"<s>"] + [bytes([i]) for i in range(256)]
    seen = set(out[1:])
    printable = [chr(c) for c in range(0x20, 0x7F)]
    cands = itertools.chain(
        ["\t\t", "\t\n", "\t ", "\n\t", "\n\n", "\n ", "\r\n", " \t", " \n", " \r", "  "],
        (" " + c for c in printable[1:]), (p + w for w in _WORDS for p in (" ", "")), _EXTRA,
        map("".join, itertools.product(printable, repeat=2)),
        map("".join, itertools.product(printable, repeat=3)))
    for s in cands:
        if len(out) >= n:
            break
        b = s.encode("utf-8")
        if b not in seen:
            seen.add(b)
            out.append(b)
    if len(out) < n:
        raise ValueError(f"vocab {n} is larger than the generator's {len(out)} tokens")
    return out[:n]


def escape_token(b: bytes) -> str:
    """A token's GGUF text as the converter writes it: Python's repr of the bytes, quotes removed."""
    return repr(b)[2:-1]


# --------------------------------------------------------------------------- weights --

_POOL = 1 << 21  # tensors bigger than this are windows of one shared random pool (fast)


def _convert(x: np.ndarray, ggml: str) -> np.ndarray:
    """float32 values -> the array whose bytes are `ggml` data (F32, F16 or BF16)."""
    if ggml == "F16":
        return x.astype(np.float16)
    return f32_to_bf16(x) if ggml == "BF16" else np.asarray(x, dtype=np.float32)


class _Weights:
    """Random tensor data, drawn in tensor order from one PCG64 stream (same draws for every dtype).

    Tensors of at most _POOL elements get fresh draws. Bigger ones (the 1.6B model's 1.6e9
    values take ~20 s just to draw here) take each row as a window at a random offset of a pool of
    _POOL normals, converted to the output type once per (distribution, type), so writing is
    about as fast as copying; the rows differ, though they are not independent of each other.
    """

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.pools: dict[str, np.ndarray] = {}
        self.scaled: dict[tuple, np.ndarray] = {}

    def _draw(self, kind: str, n: int) -> np.ndarray:
        return (self.rng.standard_normal(n, dtype=np.float32) if kind == "normal"
                else self.rng.random(n, dtype=np.float32))

    def chunks(self, ne: tuple[int, ...], init: tuple[str, float, float], ggml: str) -> Iterator[np.ndarray]:
        kind, a, b = init  # normal: mean a, std b; uniform: [a, b)
        lo, scale = (a, b) if kind == "normal" else (a, b - a)
        row, n = ne[0], math.prod(ne)
        if n <= _POOL or row > _POOL // 4:
            step = max(1, (1 << 22) // row) * row
            for i in range(0, n, step):
                yield _convert(self._draw(kind, min(step, n - i)) * np.float32(scale) + np.float32(lo), ggml)
            return
        if kind not in self.pools:
            self.pools[kind] = self._draw(kind, _POOL)
        key = (kind, lo, scale, ggml)
        if key not in self.scaled:
            self.scaled[key] = _convert(self.pools[kind] * np.float32(scale) + np.float32(lo), ggml)
        windows = np.lib.stride_tricks.sliding_window_view(self.scaled[key], row)
        rows, per = n // row, max(1, (1 << 22) // row)
        for i in range(0, rows, per):
            yield windows[self.rng.integers(0, len(windows), min(per, rows - i))]


def _tensor_plan(n_layer: int, C: int, F: int, V: int, N: int, D: int, Dd: int, R: int,
                 lerp_layout: str) -> list[tuple[str, tuple[int, ...], tuple[str, float, float]]]:
    """(name, ne, init) in the converter's order: HF tensor names sorted, layers in numeric order.

    Scales as in the fixtures' tiny model; time_mix_output and channel_mix_value of layer i are
    divided by 2^(i // R) as the converter does (R = rescale_every_n_layers, 0 = never).
    """
    H, out = C // N, 1 / math.sqrt(2 * n_layer)
    def nrm(std: float, mean: float = 0.0) -> tuple[str, float, float]: return ("normal", mean, std)
    uni = ("uniform", 0.0, 1.0)
    ln = lambda p: [(f"{p}.bias", (C,), nrm(0.05)), (f"{p}.weight", (C,), nrm(0.1, 1.0))]  # noqa: E731
    plan = [("output.weight", (C, V), nrm(4 / math.sqrt(C)))]
    for i in range(n_layer):
        s, p = 2.0 ** (i // R) if R > 0 else 1.0, f"blk.{i}."
        lerps = ([("time_mix_lerp_fused.weight", (C, 1, 1, 5), uni)] if lerp_layout == "fused" else
                 [(f"time_mix_lerp_{x}.weight", (C,), uni) for x in "gkrvw"])  # HF order: time_maa_g..w
        layer = [("time_mix_gate.weight", (C, C), nrm(1 / math.sqrt(C))),
                 ("time_mix_key.weight", (C, C), nrm(1 / math.sqrt(C))),
                 *ln("time_mix_ln"),
                 ("time_mix_output.weight", (C, C), nrm(out / math.sqrt(C) / s)),
                 ("time_mix_receptance.weight", (C, C), nrm(1 / math.sqrt(C))),
                 ("time_mix_decay.weight", (C,), ("uniform", -6.0, 1.0)),
                 ("time_mix_decay_w1.weight", (C, Dd), nrm(1 / math.sqrt(C))),
                 ("time_mix_decay_w2.weight", (Dd, C), nrm(0.5 / math.sqrt(Dd))),
                 ("time_mix_first.weight", (N, H), nrm(0.3)),
                 *lerps,
                 ("time_mix_w1.weight", (C, 5 * D), nrm(1 / math.sqrt(C))),
                 ("time_mix_w2.weight", (D, C, 5), nrm(0.15 / math.sqrt(D))),
                 ("time_mix_lerp_x.weight", (C,), uni),
                 ("time_mix_value.weight", (C, C), nrm(1 / math.sqrt(C))),
                 ("channel_mix_key.weight", (C, F), nrm(1 / math.sqrt(C))),
                 ("channel_mix_receptance.weight", (C, C), nrm(1 / math.sqrt(C))),
                 ("channel_mix_lerp_k.weight", (C,), uni),
                 ("channel_mix_lerp_r.weight", (C,), uni),
                 ("channel_mix_value.weight", (F, C), nrm(out / math.sqrt(F) / s)),
                 *ln("attn_norm"), *ln("attn_norm_2")]
        plan += [(p + name, ne, init) for name, ne, init in layer]
        if i == 0:  # HF "rwkv.blocks.0.pre_ln" sorts after block 0's other tensors
            plan += ln("token_embd_norm")
    return plan + [("token_embd.weight", (C, V), nrm(1.0)), *ln("output_norm")]


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def make_model(path: str | Path, n_layer: int = 2, n_embd: int = 256, vocab: int = 1024,
               dtype: str = "F32", seed: int = 0, head_size: int = 64, n_ffn: int | None = None,
               lora_mix: int | None = None, lora_decay: int | None = None, rescale_every: int = 6,
               lerp_layout: str = "fused", tokenizer: bool = True) -> Path:
    """Write a random RWKV-6 GGUF with llama.cpp's layout; returns its Path.

    dtype "F32", "F16" or "BF16" sets the type of the 8 big matrices per layer plus token_embd
    and output (everything else is F32) and general.file_type (0/1/32). The same seed gives the
    same values in every dtype (F16/BF16 are the F32 values rounded to nearest even). Defaults
    follow the converter: n_ffn = int(n_embd*3.5)//32*32, LoRA dims 32/64 (64/128 when
    n_embd == 4096). lerp_layout="separate" writes older files' time_mix_lerp_{g,k,r,v,w} (ne [C]
    each, as the converter squeezed them) instead of time_mix_lerp_fused [C,1,1,5].
    tokenizer=True writes a World-like vocabulary (see vocab_tokens) and the chat template.

    >>> make_model(tmp_path / "m.gguf", n_layer=24, n_embd=2048, vocab=65536, dtype="F16")  # 1.6B shape
    """
    n_layer, C, N, V = _check_shape(n_layer, n_embd, head_size, vocab, dtype, seed, tokenizer)
    F = _check_int("n_ffn", int(C * 3.5) // 32 * 32 if n_ffn is None else n_ffn, 1)
    D = _check_int("lora_mix", (64 if C == 4096 else 32) if lora_mix is None else lora_mix, 1)
    Dd = _check_int("lora_decay", (128 if C == 4096 else 64) if lora_decay is None else lora_decay, 1)
    R = _check_int("rescale_every", rescale_every, 0)
    if lerp_layout not in ("fused", "separate"):
        raise ValueError(f"lerp_layout must be 'fused' or 'separate', got {lerp_layout!r}")

    plan = _tensor_plan(n_layer, C, F, V, N, D, Dd, R, lerp_layout)
    meta: dict[str, Any] = {
        "general.architecture": "rwkv6", "general.type": "model", "general.name": "rwkv6-synthetic",
        "general.size_label": size_label(sum(math.prod(ne) for _, ne, _ in plan)),
        "rwkv6.context_length": U32(1048576), "rwkv6.embedding_length": U32(C),
        "rwkv6.block_count": U32(n_layer), "rwkv6.attention.layer_norm_epsilon": F32(1e-5),
        "rwkv6.rescale_every_n_layers": U32(R), "rwkv6.wkv.head_size": U32(N),
        "rwkv6.time_mix_extra_dim": U32(D), "rwkv6.time_decay_extra_dim": U32(Dd),
        "rwkv6.feed_forward_length": U32(F), "general.file_type": U32(FILE_TYPES[dtype]),
        "rwkv6.attention.head_count": U32(0), "general.quantization_version": U32(2)}
    return _write_plan(path, meta, plan, V if tokenizer else 0, seed,
                       lambda name: dtype if is_big_matrix(name) else "F32")


def _check_shape(n_layer: int, n_embd: int, head_size: int, vocab: int, dtype: str, seed: int,
                 tokenizer: bool) -> tuple[int, int, int, int]:
    """The arguments both architectures share, checked: (n_layer, C, N, V)."""
    n_layer = _check_int("n_layer", n_layer, 1)
    C = _check_int("n_embd", n_embd, 1)
    N = _check_int("head_size", head_size, 1)
    V = _check_int("vocab", vocab, 257 if tokenizer else 1)
    if C % N:
        raise ValueError(f"n_embd {C} is not a multiple of head_size {N}")
    _check_int("seed", seed, 0)
    if dtype not in FILE_TYPES:
        raise ValueError(f"dtype must be one of {sorted(FILE_TYPES)}, got {dtype!r}")
    if not isinstance(tokenizer, bool):
        raise ValueError(f"tokenizer must be a bool, got {tokenizer!r}")
    return n_layer, C, N, V


def _write_plan(path: str | Path, meta: dict[str, Any], plan: list, vocab: int, seed: int,
                type_of: Any) -> Path:
    """Write `plan`'s tensors (type_of(name) each, values streamed from seed) after `meta` and,
    with a vocab, the World-like tokenizer."""
    if vocab:
        meta.update(_tokenizer_meta(vocab))
    w = _Weights(seed)
    tensors = [(name, type_of(name), ne, lambda ne=ne, init=init, t=type_of(name): w.chunks(ne, init, t))
               for name, ne, init in plan]
    return write_gguf(path, meta, tensors)


# ----------------------------------------------------------------------------- RWKV-7 --

# tensors an F16/BF16 RWKV-7 file from the converter holds in 16 bits, beyond the big matrices:
# the a/v/g LoRAs (the decay LoRA stays F32)
_V7_16BIT_LORAS = tuple(f"time_mix_{n}{i}" for n in "avg" for i in (1, 2))
_V7_BIG = ("time_mix_key", "time_mix_value", "time_mix_receptance", "time_mix_output", "channel_mix_key",
           "channel_mix_value")


def _tensor_plan7(n_layer: int, C: int, F: int, V: int, N: int, r: dict) -> list[tuple[str, tuple[int, ...], tuple]]:
    """(name, ne, init) in the converter's order (fla-hub names sorted), with layer 0's dummy
    v LoRA (copies of the a one: same init, same shape); scales as the fixtures' tiny7."""
    from .convert.x070 import blink_to_fla
    out_std = 1 / math.sqrt(2 * n_layer)
    def nrm(std: float, mean: float = 0.0) -> tuple[str, float, float]: return ("normal", mean, std)
    def uni(a: float, b: float) -> tuple[str, float, float]: return ("uniform", a, b)
    items = [("emb.weight", "token_embd.weight", (C, V), nrm(1.0)),
             ("head.weight", "output.weight", (C, V), nrm(4 / math.sqrt(C))),
             ("ln_out.weight", "output_norm.weight", (C,), nrm(0.1, 1.0)),
             ("ln_out.bias", "output_norm.bias", (C,), nrm(0.05)),
             ("blocks.0.ln0.weight", "token_embd_norm.weight", (C,), nrm(0.1, 1.0)),
             ("blocks.0.ln0.bias", "token_embd_norm.bias", (C,), nrm(0.05))]
    for i in range(n_layer):
        b, k = f"blocks.{i}.", f"blk.{i}."
        items += [(b + "ln1.weight", k + "attn_norm.weight", (C,), nrm(0.1, 1.0)),
                  (b + "ln1.bias", k + "attn_norm.bias", (C,), nrm(0.05)),
                  (b + "ln2.weight", k + "attn_norm_2.weight", (C,), nrm(0.1, 1.0)),
                  (b + "ln2.bias", k + "attn_norm_2.bias", (C,), nrm(0.05)),
                  (b + "att.x_w", k + "time_mix_lerp_fused.weight", (C, 1, 1, 6), uni(0, 1)),  # x_w sorts last
                  (b + "att.w0", k + "time_mix_w0.weight", (C,), uni(-6, -1)),
                  (b + "att.w1", k + "time_mix_w1.weight", (C, r["w"]), nrm(1 / math.sqrt(C))),
                  (b + "att.w2", k + "time_mix_w2.weight", (r["w"], C), nrm(1 / math.sqrt(r["w"]))),
                  (b + "att.a0", k + "time_mix_a0.weight", (C,), uni(-0.4, 0.4)),
                  (b + "att.a1", k + "time_mix_a1.weight", (C, r["a"]), nrm(1 / math.sqrt(C))),
                  (b + "att.a2", k + "time_mix_a2.weight", (r["a"], C), nrm(0.5 / math.sqrt(r["a"]))),
                  (b + "att.g1", k + "time_mix_g1.weight", (C, r["g"]), nrm(1 / math.sqrt(C))),
                  (b + "att.g2", k + "time_mix_g2.weight", (r["g"], C), nrm(1 / math.sqrt(r["g"]))),
                  (b + "att.k_k", k + "time_mix_k_k.weight", (C,), uni(0.7, 1.0)),
                  (b + "att.k_a", k + "time_mix_k_a.weight", (C,), uni(0.9, 1.1)),
                  (b + "att.r_k", k + "time_mix_r_k.weight", (C,), nrm(0.05, -0.04)),
                  (b + "att.receptance.weight", k + "time_mix_receptance.weight", (C, C), nrm(1 / math.sqrt(C))),
                  (b + "att.key.weight", k + "time_mix_key.weight", (C, C), nrm(1 / math.sqrt(C))),
                  (b + "att.value.weight", k + "time_mix_value.weight", (C, C), nrm(1 / math.sqrt(C))),
                  (b + "att.output.weight", k + "time_mix_output.weight", (C, C), nrm(out_std / math.sqrt(C))),
                  (b + "att.ln_x.weight", k + "time_mix_ln.weight", (C,), nrm(0.1, 1.0)),
                  (b + "att.ln_x.bias", k + "time_mix_ln.bias", (C,), nrm(0.05)),
                  (b + "ffn.x_k", k + "channel_mix_lerp_k.weight", (C,), uni(0, 1)),
                  (b + "ffn.key.weight", k + "channel_mix_key.weight", (C, F), nrm(1 / math.sqrt(C))),
                  (b + "ffn.value.weight", k + "channel_mix_value.weight", (F, C), nrm(out_std / math.sqrt(F)))]
        if i > 0:
            items += [(b + "att.v0", k + "time_mix_v0.weight", (C,), uni(0.3, 1.1)),
                      (b + "att.v1", k + "time_mix_v1.weight", (C, r["v"]), nrm(1 / math.sqrt(C))),
                      (b + "att.v2", k + "time_mix_v2.weight", (r["v"], C), nrm(0.5 / math.sqrt(r["v"])))]
    items.sort(key=lambda x: blink_to_fla(x[0]))
    plan = []
    for _, name, ne, init in items:
        if name.startswith("blk.0.time_mix_a"):
            plan.append((name.replace("time_mix_a", "time_mix_v"), ne, init))
        plan.append((name, ne, init))
    return plan


def make_model7(path: str | Path, n_layer: int = 2, n_embd: int = 256, vocab: int = 1024, dtype: str = "F32",
                seed: int = 0, head_size: int = 64, n_ffn: int | None = None,
                lora: tuple[int, int, int, int] = (32, 32, 16, 64), tokenizer: bool = True) -> Path:
    """Write a random RWKV-7 GGUF with llama.cpp's layout; returns its Path.

    lora: the ranks (decay w, iclr a, value v, gate g). dtype "F16"/"BF16" stores the big
    matrices, token_embd, output and the a/v/g LoRAs in 16 bits, as the converter does.

    >>> make_model7(tmp_path / "m.gguf", n_layer=24, n_embd=2048, vocab=65536, lora=(96, 96, 64, 256))  # 1.5B shape
    """
    n_layer, C, N, V = _check_shape(n_layer, n_embd, head_size, vocab, dtype, seed, tokenizer)
    F = _check_int("n_ffn", 4 * C if n_ffn is None else n_ffn, 1)
    r = dict(zip("wavg", (_check_int(f"lora[{i}]", x, 1) for i, x in enumerate(lora))))
    plan = _tensor_plan7(n_layer, C, F, V, N, r)
    meta: dict[str, Any] = {
        "general.architecture": "rwkv7", "general.type": "model", "general.name": "rwkv7-synthetic",
        "general.size_label": size_label(sum(math.prod(ne) for _, ne, _ in plan)),
        "rwkv7.context_length": U32(1048576), "rwkv7.embedding_length": U32(C), "rwkv7.block_count": U32(n_layer),
        "rwkv7.attention.layer_norm_epsilon": F32(1e-5), "rwkv7.wkv.head_size": U32(N),
        "rwkv7.attention.decay_lora_rank": U32(r["w"]), "rwkv7.attention.iclr_lora_rank": U32(r["a"]),
        "rwkv7.attention.value_residual_mix_lora_rank": U32(r["v"]), "rwkv7.attention.gate_lora_rank": U32(r["g"]),
        "rwkv7.feed_forward_length": U32(F), "general.file_type": U32(FILE_TYPES[dtype]),
        "rwkv7.attention.head_count": U32(0), "general.quantization_version": U32(2)}

    def type_of(name: str) -> str:
        short = name.split(".")[-2] if name.startswith("blk.") else ""
        big = name in ("token_embd.weight", "output.weight") or short in _V7_BIG or short in _V7_16BIT_LORAS
        return dtype if big else "F32"
    return _write_plan(path, meta, plan, V if tokenizer else 0, seed, type_of)


def _tokenizer_meta(V: int) -> dict[str, Any]:
    """A World-like vocabulary (vocab_tokens) and the converter's chat template."""
    meta: dict[str, Any] = {
        "tokenizer.ggml.model": "rwkv",
        "tokenizer.ggml.tokens": Array(GGUFValueType.STRING, ["<s>"] + [escape_token(b) for b in vocab_tokens(V)[1:]]),
        "tokenizer.ggml.token_type": Array(GGUFValueType.INT32, np.r_[3, np.ones(V - 1, np.int32)]),
        "tokenizer.ggml.bos_token_id": U32(0), "tokenizer.ggml.eos_token_id": U32(0)}
    if V > 261:
        meta["tokenizer.ggml.eot_token_id"] = U32(261)
    meta["tokenizer.chat_template"] = CHAT_TEMPLATE
    return meta


# -------------------------------------------------------------------- reading GGUF --

def _retype_chunks(t: GGUFTensor, target: str) -> Iterator[np.ndarray]:
    x = t.data.view("<f4")
    step = 1 << 22
    for i in range(0, len(x), step):
        c = x[i:i + step]
        if target == "F32-ROUNDED-BF16":
            yield bf16_to_f32(f32_to_bf16(c))
        elif target == "F32-ROUNDED-F16":
            yield c.astype(np.float16).astype(np.float32)
        else:
            yield _convert(c, RETYPES[target][0])


def retype_gguf(src: str | Path, dst: str | Path, dtype: str) -> Path:
    """Copy an F32 rwkv6 GGUF, storing its big matrices (see is_big_matrix) as `dtype`.

    dtype: "F16" (numpy's cast, as the converter does), "BF16" (round to nearest even, as ggml),
    "F32" (a plain copy), or "F32-ROUNDED-F16"/"F32-ROUNDED-BF16": F32 tensors holding exactly
    the 16-bit-rounded values, so a 16-bit engine path can be compared with an F32 run on the
    same weights. general.file_type becomes 1/32 for F16/BF16, else 0. Everything else
    (metadata, other tensors, order, alignment) is copied byte for byte.

    >>> retype_gguf("tiny-F32.gguf", "tiny-BF16.gguf", "BF16")
    """
    if dtype not in RETYPES:
        raise ValueError(f"dtype must be one of {sorted(RETYPES)}, got {dtype!r}")
    g = read_gguf(src)
    out_type, file_type = RETYPES[dtype]
    meta = dict(g.metadata)
    meta["general.file_type"] = U32(file_type)
    tensors: list[tuple[str, int | str, tuple[int, ...], Any]] = []
    for t in g.tensors:
        if not is_big_matrix(t.name):
            tensors.append((t.name, t.type, t.ne, t.data))
        elif t.type != ggml_type("F32").id:
            raise ValueError(f"{src}: tensor {t.name!r} is {ggml_type(t.type).name}, expected F32")
        else:
            tensors.append((t.name, out_type, t.ne, lambda t=t: _retype_chunks(t, dtype)))
    return write_gguf(dst, meta, tensors, alignment=g.alignment, version=g.version)
