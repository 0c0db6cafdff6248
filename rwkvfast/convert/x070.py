"""x070.py — RWKV-7 ("Goose", BlinkDL x070) checkpoints: names, shapes, and the GGUF plan.

BlinkDL's x070 names, per layer `blocks.i.`: ln1/ln2 (ln0 in layer 0), `att.x_{r,w,k,v,a,g}`
[1,1,C], `att.w0/a0/v0` [1,1,C], `att.w1/a1/v1/g1` [C,D], `att.w2/a2/v2/g2` [D,C] (v0..v2 only from
layer 1: layer 0 has no value residual, and where a checkpoint has them anyway they are
unused), `att.k_k`, `att.k_a` [1,1,C], `att.r_k` [H,N], `att.{receptance,key,value,output}.weight`,
`att.ln_x.*`, `ffn.x_k` [1,1,C], `ffn.{key,value}.weight`; `emb.weight`, `ln_out.*`, `head.weight`.
A Hugging Face directory in fla-hub's layout (`model.layers.i.attn.{r,k,v,o}_proj`, `*_lora.lora.{0,2}`,
`g_norm`, `model.embeddings`, `lm_head`, ...) is read through the same names.

What llama.cpp's converter (Rwkv7Model, from the fla-hub layout) writes, reproduced here:
* tensors in the order of the fla-hub names sorted as strings, each LoRA's down projection
  `time_mix_?1` [C, D] (ggml ne) = ?1ᵀ, its up projection `time_mix_?2` [D, C] = ?2ᵀ, its bias
  `time_mix_?0` [C]; the six lerps stacked r, w, k, v, a, g into `time_mix_lerp_fused`
  [C,1,1,6] once the last of them (x_w) is reached; `time_mix_r_k` flattened to [C];
* layer 0 gets dummy `time_mix_v0/v1/v2`, copies of a0/a1/a2 written just before each;
* F16 files keep 1-D tensors, norms, lerps and the decay LoRA (w1, w2) in F32 and the a/v/g LoRAs
  in F16, like the big matrices (the F32 list names RWKV-6's LoRAs only).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checkpoint import ConvertError
from .pth import CheckpointTensor

__all__ = ["RWKV7Params", "is_x070", "fla_to_blink", "blink_to_fla", "infer_hparams7", "plan7", "metadata7"]

LERPS7 = ("r", "w", "k", "v", "a", "g")  # the order of time_mix_lerp_fused
_LORAS = ("w", "a", "v", "g")

# BlinkDL block key -> fla-hub name (in `model.layers.i.`)
_FLA = {"ln1.": "attn_norm.", "ln2.": "ffn_norm.", "ln0.": "pre_norm.", "att.ln_x.": "attn.g_norm.",
        "att.receptance.weight": "attn.r_proj.weight", "att.key.weight": "attn.k_proj.weight",
        "att.value.weight": "attn.v_proj.weight", "att.output.weight": "attn.o_proj.weight",
        "att.k_k": "attn.k_k", "att.k_a": "attn.k_a", "att.r_k": "attn.r_k",
        "ffn.x_k": "ffn.x_k", "ffn.key.weight": "ffn.key.weight", "ffn.value.weight": "ffn.value.weight",
        **{f"att.x_{x}": f"attn.x_{x}" for x in LERPS7},
        **{f"att.{n}0": f"attn.{n}_lora.lora.2.bias" for n in "wav"},
        **{f"att.{n}1": f"attn.{n}_lora.lora.0.weight" for n in _LORAS},
        **{f"att.{n}2": f"attn.{n}_lora.lora.2.weight" for n in _LORAS}}
_FLA_TOP = {"emb.weight": "model.embeddings.weight", "head.weight": "lm_head.weight",
            "ln_out.weight": "model.norm.weight", "ln_out.bias": "model.norm.bias"}
_BLINK_TOP = {v: k for k, v in _FLA_TOP.items()}
_BLINK = {v: k for k, v in _FLA.items()}


def _rename(name: str, top: dict, table: dict, block: str, to_block: str) -> str:
    """One naming into the other: whole names in `top`, then per-layer ones (`block` matches the
    layer prefix) by exact key or key prefix (keys ending in '.') of `table`."""
    if name in top:
        return top[name]
    m = re.match(block, name)
    if m:
        rest = m.group(2)
        for k, v in table.items():
            if rest == k or (k.endswith(".") and rest.startswith(k)):
                return f"{to_block}{m.group(1)}.{v}{rest[len(k):]}"
    return name


def blink_to_fla(name: str) -> str:
    """BlinkDL x070 name -> fla-hub RWKV-7 name (other names pass through)."""
    return _rename(name, _FLA_TOP, _FLA, r"blocks\.(\d+)\.(.*)$", "model.layers.")


def fla_to_blink(name: str) -> str:
    """fla-hub RWKV-7 name -> BlinkDL x070 name (other names pass through)."""
    return _rename(name, _BLINK_TOP, _BLINK, r"model\.layers\.(\d+)\.(.*)$", "blocks.")


def _transposed(t: CheckpointTensor, name: str) -> CheckpointTensor:
    return CheckpointTensor(name, t.dtype, t.shape[::-1], t._view.T, t._map, t._span)


def hf_x070_to_blink(tensors: dict[str, CheckpointTensor]) -> dict[str, CheckpointTensor]:
    """A Hugging Face RWKV-7 checkpoint under BlinkDL's names and orientations: fla-hub's layout
    (`model.layers.i.attn.*_proj`, LoRAs `*_lora.lora.{0,2}` stored transposed) and the one
    with BlinkDL's tensor names under `model.blocks.i.attention.*` / `feed_forward.*` (LoRAs as
    BlinkDL stores them). Any other naming passes through unchanged."""
    if any("_lora.lora." in k or ".attn.r_proj." in k for k in tensors):
        out = {}
        for k, t in tensors.items():
            b = fla_to_blink(k)
            lora = re.fullmatch(r"blocks\.\d+\.att\.[wavg][12]", b)
            out[b] = _transposed(t, b) if lora and len(t.shape) == 2 else t
            out[b].name = b
        return out
    if not any(re.match(r"(model|rwkv|rwkv7)\.(blocks|layers)\.\d+\.(attention|feed_forward)\.", k) for k in tensors):
        return tensors
    out = {}
    for k, t in tensors.items():
        b = re.sub(r"^(model|rwkv|rwkv7)\.", "", k)
        b = re.sub(r"^layers\.", "blocks.", b)
        b = b.replace(".attention.", ".att.").replace(".feed_forward.", ".ffn.")
        b = re.sub(r"\.(pre_ln|pre_norm)\.", ".ln0.", b)
        b = {"embeddings.weight": "emb.weight", "lm_head.weight": "head.weight", "norm.weight": "ln_out.weight",
             "norm.bias": "ln_out.bias"}.get(b, b)
        t.name = b
        out[b] = t
    return out


def is_x070(tensors: dict[str, CheckpointTensor]) -> bool:
    return "blocks.0.att.r_k" in tensors or "blocks.0.att.k_k" in tensors


@dataclass(frozen=True)
class RWKV7Params:
    n_layer: int
    n_embd: int
    n_vocab: int
    n_ffn: int
    head_size: int
    n_head: int
    lora: dict  # "w", "a", "v", "g" -> rank
    layer_norm_eps: float = 1e-5


def _layer_shapes(C: int, F: int, H: int, N: int, r: dict, il: int) -> dict[str, tuple[int, ...]]:
    s = {f"ln{k}.{w}": (C,) for k in (1, 2) for w in ("weight", "bias")}
    s.update({f"att.x_{x}": (1, 1, C) for x in LERPS7})
    for n in _LORAS:
        if n == "v" and il == 0:
            continue
        s[f"att.{n}1"], s[f"att.{n}2"] = (C, r[n]), (r[n], C)
        if n != "g":
            s[f"att.{n}0"] = (1, 1, C)
    s.update({"att.k_k": (1, 1, C), "att.k_a": (1, 1, C), "att.r_k": (H, N), "att.ln_x.weight": (C,),
              "att.ln_x.bias": (C,), "ffn.x_k": (1, 1, C), "ffn.key.weight": (F, C), "ffn.value.weight": (C, F)})
    s.update({f"att.{m}.weight": (C, C) for m in ("receptance", "key", "value", "output")})
    return s


def infer_hparams7(tensors: dict[str, CheckpointTensor], config: dict[str, Any] | None = None) -> RWKV7Params:
    """The model's dimensions and LoRA ranks from its tensor shapes; ConvertError naming the
    tensor when the checkpoint is not a complete, consistent RWKV-7 (x070) model. Layer 0's
    value-residual LoRA, where a checkpoint has one, is dropped from `tensors` (unused)."""
    def shape(k: str) -> tuple[int, ...]:
        t = tensors.get(k)
        if t is None:
            raise ConvertError(f"missing tensor {k!r}: not a complete RWKV-7 checkpoint")
        return t.shape

    def dims(k: str, n: int) -> tuple[int, ...]:
        s = shape(k)
        if len(s) != n or not all(d > 0 for d in s):
            raise ConvertError(f"tensor {k!r} has shape {list(s)}, expected {n} positive dimensions")
        return s

    V, C = dims("emb.weight", 2)
    layers = sorted({int(m.group(1)) for k in tensors for m in [re.match(r"blocks\.(\d{1,9})\.", k)] if m})
    if not layers or layers != list(range(len(layers))):
        raise ConvertError(f"block numbers must run 0..n-1, found {layers[:8]}{'...' if len(layers) > 8 else ''}")
    H, N = dims("blocks.0.att.r_k", 2)
    if H * N != C:
        raise ConvertError(f"r_k {H}x{N} does not match n_embd {C} (heads x head size)")
    F = dims("blocks.0.ffn.key.weight", 2)[0]
    ranks = {n: dims(f"blocks.0.att.{n}1", 2)[1] for n in "wag"}
    ranks["v"] = dims(f"blocks.{min(1, len(layers) - 1)}.att.v1", 2)[1] if len(layers) > 1 else 1
    for k in [k for k in tensors if re.fullmatch(r"blocks\.0\.att\.v[012]", k)]:
        del tensors[k]  # layer 0 has no value residual
    want = {"emb.weight": (V, C), "blocks.0.ln0.weight": (C,), "blocks.0.ln0.bias": (C,), "ln_out.weight": (C,),
            "ln_out.bias": (C,), "head.weight": (V, C)}
    for i in layers:
        want.update({f"blocks.{i}.{k}": v for k, v in _layer_shapes(C, F, H, N, ranks, i).items()})

    def same(have: tuple[int, ...], v: tuple[int, ...]) -> bool:
        # the (1, 1, C) vectors may be stored squeezed (Hugging Face); they are squeezed on output
        return have == v or (v[:-1] == (1, 1) and tuple(d for d in have if d != 1) == (v[-1],)) or \
            (len(v) == 2 and v[0] * v[1] == C and have == (C,))  # r_k flattened

    for k, v in want.items():
        if not same(shape(k), v):
            raise ConvertError(f"tensor {k!r} has shape {list(shape(k))}, expected {list(v)} (n_embd {C}, ffn {F}, "
                               f"{H} heads of {N}, LoRA ranks w {ranks['w']} a {ranks['a']} v {ranks['v']} "
                               f"g {ranks['g']})")
    extra = sorted(set(tensors) - set(want))
    if extra:
        raise ConvertError(f"unexpected tensor(s) for RWKV-7: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    cfg = config or {}
    for key, have in (("hidden_size", C), ("num_hidden_layers", len(layers)), ("head_dim", N), ("vocab_size", V),
                      ("intermediate_size", F), ("decay_low_rank_dim", ranks["w"]), ("a_low_rank_dim", ranks["a"]),
                      ("v_low_rank_dim", ranks["v"]), ("gate_low_rank_dim", ranks["g"])):
        if cfg.get(key) is not None and cfg[key] != have:
            raise ConvertError(f"config.json says {key} = {cfg[key]!r}, the tensors say {have}")
    eps = cfg.get("norm_eps", 1e-5)
    return RWKV7Params(len(layers), C, V, F, N, H, ranks, float(eps))


def plan7(t: dict[str, CheckpointTensor], p: RWKV7Params, out_cls: Any) -> list:
    """The GGUF tensors of an x070 checkpoint, in llama.cpp's converter's order (out_cls: the
    caller's record type, to_gguf._Out)."""
    C = p.n_embd
    vec = lambda k: (lambda: t[k].f32().reshape(-1))  # noqa: E731
    tr = lambda k: (lambda: t[k].f32().T)  # noqa: E731
    outs = [out_cls("token_embd.weight", (C, p.n_vocab), blink_to_fla("emb.weight"), ["emb.weight"], None,
                    t["emb.weight"]),
            out_cls("output.weight", (C, p.n_vocab), blink_to_fla("head.weight"), ["head.weight"], None,
                    t["head.weight"])]
    for k, g in (("weight", "weight"), ("bias", "bias")):
        outs.append(out_cls(f"token_embd_norm.{g}", (C,), blink_to_fla(f"blocks.0.ln0.{k}"), [f"blocks.0.ln0.{k}"],
                            vec(f"blocks.0.ln0.{k}"), None))
        outs.append(out_cls(f"output_norm.{g}", (C,), blink_to_fla(f"ln_out.{k}"), [f"ln_out.{k}"],
                            vec(f"ln_out.{k}"), None))
    plain = {"att.receptance.weight": "time_mix_receptance", "att.key.weight": "time_mix_key",
             "att.value.weight": "time_mix_value", "att.output.weight": "time_mix_output",
             "ffn.key.weight": "channel_mix_key", "ffn.value.weight": "channel_mix_value"}
    vectors = {"ln1.weight": "attn_norm.weight", "ln1.bias": "attn_norm.bias", "ln2.weight": "attn_norm_2.weight",
               "ln2.bias": "attn_norm_2.bias", "att.ln_x.weight": "time_mix_ln.weight",
               "att.ln_x.bias": "time_mix_ln.bias", "att.k_k": "time_mix_k_k.weight",
               "att.k_a": "time_mix_k_a.weight", "att.r_k": "time_mix_r_k.weight",
               "ffn.x_k": "channel_mix_lerp_k.weight"}
    for i in range(p.n_layer):
        b, blk = f"blocks.{i}.", f"blk.{i}."
        for k, g in plain.items():
            src = t[b + k]
            outs.append(out_cls(blk + g + ".weight", src.shape[::-1], blink_to_fla(b + k), [b + k], None, src))
        for k, g in vectors.items():
            outs.append(out_cls(blk + g, (C,), blink_to_fla(b + k), [b + k], vec(b + k), None))
        for n in _LORAS:
            if n == "v" and i == 0:
                continue
            r = p.lora[n]
            outs.append(out_cls(f"{blk}time_mix_{n}1.weight", (C, r), blink_to_fla(f"{b}att.{n}1"), [f"{b}att.{n}1"],
                                tr(f"{b}att.{n}1"), None))
            outs.append(out_cls(f"{blk}time_mix_{n}2.weight", (r, C), blink_to_fla(f"{b}att.{n}2"), [f"{b}att.{n}2"],
                                tr(f"{b}att.{n}2"), None))
            if n != "g":
                outs.append(out_cls(f"{blk}time_mix_{n}0.weight", (C,), blink_to_fla(f"{b}att.{n}0"),
                                    [f"{b}att.{n}0"], vec(f"{b}att.{n}0"), None))
        lerps = [f"{b}att.x_{x}" for x in LERPS7]
        outs.append(out_cls(blk + "time_mix_lerp_fused.weight", (C, 1, 1, 6), max(blink_to_fla(k) for k in lerps),
                            lerps, (lambda ks=lerps: np.stack([t[k].f32().reshape(1, 1, C) for k in ks])), None))
    outs.sort(key=lambda o: o.hf_key)
    # layer 0's dummy value-residual LoRA: a copy of each a-tensor, just before it
    out = []
    for o in outs:
        if o.name.startswith("blk.0.time_mix_a"):
            out.append(out_cls(o.name.replace("time_mix_a", "time_mix_v"), o.ne, o.hf_key, o.sources, o.make, o.rows))
        out.append(o)
    return out


def metadata7(p: RWKV7Params) -> list[tuple[str, Any]]:
    """The rwkv7.* keys, in the converter's order (general.* and tokenizer keys are the caller's)."""
    from ..gguf_writer import F32, U32
    return [("rwkv7.context_length", U32(1048576)), ("rwkv7.embedding_length", U32(p.n_embd)),
            ("rwkv7.block_count", U32(p.n_layer)), ("rwkv7.attention.layer_norm_epsilon", F32(p.layer_norm_eps)),
            ("rwkv7.wkv.head_size", U32(p.head_size)), ("rwkv7.attention.decay_lora_rank", U32(p.lora["w"])),
            ("rwkv7.attention.iclr_lora_rank", U32(p.lora["a"])),
            ("rwkv7.attention.value_residual_mix_lora_rank", U32(p.lora["v"])),
            ("rwkv7.attention.gate_lora_rank", U32(p.lora["g"])), ("rwkv7.feed_forward_length", U32(p.n_ffn))]
