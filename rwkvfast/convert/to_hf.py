"""to_hf.py — the Hugging Face layout of a BlinkDL checkpoint (`rwkvfast-convert --to-hf`).

The user guide's renaming script, without torch: config.json, model.safetensors with the
Hugging Face names (tensors as stored) and the vocabulary file, each written atomically.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from rwkvfast.atomic_file import sweep_stale, write_bytes

from .checkpoint import blink_to_hf, infer_hparams, load_checkpoint
from .safetensors import write_safetensors
from .vocab import load_world_vocab, packaged_vocab_text, token_metadata, vocab_path

__all__ = ["to_hf"]


def to_hf(input: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool = False,
          rescale_every: int | None = None, vocab: str | os.PathLike | None = None) -> Path:
    """Write the Hugging Face layout of a BlinkDL checkpoint (the user guide's key renaming):
    output_dir/config.json, model.safetensors (tensors as stored) and rwkv_vocab_v20230424.txt
    (the vocabulary convert() would use for this input)."""
    src, out = Path(input), Path(output_dir)
    tensors, config = load_checkpoint(src)
    p = infer_hparams(tensors, config, rescale_every)
    st = out / "model.safetensors"
    if st.exists() and not overwrite:
        raise FileExistsError(f"{st} exists; pass overwrite=True (--force) to replace it")
    out.mkdir(parents=True, exist_ok=True)
    sweep_stale(out)  # what an interrupted run left
    cfg = {"architectures": ["Rwkv6ForCausalLM"], "model_type": "rwkv6", "attention_hidden_size": p.n_embd,
           "bos_token_id": 0, "eos_token_id": 0, "head_size": p.head_size, "head_size_divisor": 8,
           "hidden_size": p.n_embd, "intermediate_size": p.n_ffn, "layer_norm_epsilon": p.layer_norm_eps,
           "num_attention_heads": p.n_head, "num_hidden_layers": p.n_layer, "rescale_every": p.rescale_every,
           "tie_word_embeddings": False, "use_cache": True, "vocab_size": p.n_vocab}
    items = sorted(((blink_to_hf(k), t) for k, t in tensors.items()), key=lambda kv: kv[0])
    write_safetensors(st, [(k, t.dtype, t.shape, (lambda t=t: iter([t.raw()]))) for k, t in items],
                      metadata={"format": "pt"})
    _atomic_text(out / "config.json", json.dumps(cfg, indent=2) + "\n")
    vp = vocab_path(src, vocab)
    text = (vp.read_text(encoding="utf-8") if vp is not None else
            packaged_vocab_text())
    token_metadata(load_world_vocab(vp), p.n_vocab)  # refuse a vocabulary that does not fit the model
    _atomic_text(out / "rwkv_vocab_v20230424.txt", text)
    return out


def _atomic_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))
