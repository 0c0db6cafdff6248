"""rwkvfast.convert for RWKV-7 (convert/x070.py): a BlinkDL x070 .pth, or a Hugging Face directory
in fla-hub's layout, to the GGUF llama.cpp's converter writes (its Rwkv7Model, from fla-hub's
layout), byte for byte, without torch."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import rwkvfast
from rwkvfast.cli.convert import main as convert_main
from rwkvfast.convert import ConvertError, convert, read_torch_checkpoint, write_safetensors
from rwkvfast.convert.x070 import blink_to_fla

from conftest import fixture_path, reference_ids

NAME = "rwkv7-synthetic-tiny7"  # the --model-name the fixtures were converted with
DIR = "rwkv7/tiny7"


def _vocab():
    return fixture_path(f"{DIR}/rwkv_vocab_v20230424.txt")


@pytest.mark.parametrize("outtype", ["F32", "F16"])
def test_pth_converts_to_llama_cpp_file_byte_for_byte(tmp_path, outtype):
    """F16 holds the big matrices and the a/v/g LoRAs in F16, the decay LoRA and the vectors in
    F32, layer 0 the dummy v0/v1/v2 (copies of a0/a1/a2), tensors in the sorted fla-hub order."""
    ref = fixture_path(f"{DIR}/gguf/tiny7-{outtype}.gguf")
    out = convert(fixture_path(f"{DIR}/tiny7.pth"), tmp_path / "o.gguf", outtype.lower(), model_name=NAME,
                  vocab=_vocab())
    assert out.read_bytes() == ref.read_bytes()


def test_converted_f32_matches_the_official_package(tmp_path):
    out = convert(fixture_path(f"{DIR}/tiny7.pth"), tmp_path / "o.gguf", "f32", vocab=_vocab())
    ref = np.load(fixture_path(f"{DIR}/ref/rwkv_fp32.npy"))
    with rwkvfast.Model(out, n_threads=2) as m:
        assert m.info["architecture"] == "rwkv7" and m.info["lora_value"] == 16
        got = m.forward(reference_ids(DIR), m.new_state(), all_logits=True)
    assert float(np.abs(got - ref).max()) <= 2e-5 and (got.argmax(1) == ref.argmax(1)).all()


def _fla_dir(tmp_path):
    """The tiny7 weights as fla-hub's Hugging Face layout (what the fixtures' converter read)."""
    t = read_torch_checkpoint(fixture_path(f"{DIR}/tiny7.pth"))
    d = tmp_path / "hf"
    d.mkdir()
    items = []
    for k, v in t.items():
        a = v.f32()
        if re.fullmatch(r"blocks\.\d+\.att\.[wavg][12]", k):
            a = a.T  # fla-hub keeps LoRAs as nn.Linear weights
        elif re.fullmatch(r"blocks\.\d+\.(att\.[wav]0|att\.k_[ka]|ffn\.x_k)", k):
            a = a.reshape(-1)
        items.append((blink_to_fla(k), np.ascontiguousarray(a)))
    write_safetensors(d / "model.safetensors", [(n, "F32", a.shape, (lambda a=a: iter([a]))) for n, a in items])
    shutil.copy(fixture_path(f"{DIR}/config.json"), d / "config.json")
    shutil.copy(_vocab(), d / "rwkv_vocab_v20230424.txt")
    return d


def test_a_hugging_face_fla_directory_converts_to_the_same_file(tmp_path):
    out = convert(_fla_dir(tmp_path), tmp_path / "o.gguf", "f16", model_name=NAME)
    assert out.read_bytes() == fixture_path(f"{DIR}/gguf/tiny7-F16.gguf").read_bytes()


def test_quantized_outtypes_follow_llama_quantize(tmp_path):
    out = convert(fixture_path(f"{DIR}/tiny7.pth"), tmp_path / "q.gguf", "q8_0", model_name=NAME, vocab=_vocab())
    want = fixture_path(f"{DIR}/gguf/tiny7-Q8_0.gguf")
    from rwkvfast.gguf_reader import read_gguf
    a, b = read_gguf(out), read_gguf(want)
    assert {t.name: (t.type, bytes(t.data)) for t in a.tensors} == {t.name: (t.type, bytes(t.data)) for t in b.tensors}


def test_inconsistent_x070_checkpoints_are_clear_errors(tmp_path):
    from torch_zip import write_torch_zip
    t = read_torch_checkpoint(fixture_path(f"{DIR}/tiny7.pth"))
    w = {k: v.f32() for k, v in t.items()}
    bad_rank = dict(w, **{"blocks.2.att.a2": np.zeros((24, 256), np.float32)})
    missing = {k: v for k, v in w.items() if k != "blocks.3.att.k_a"}
    for weights, words in ((bad_rank, "'blocks.2.att.a2' has shape [24, 256], expected [32, 256]"),
                           (missing, "missing tensor 'blocks.3.att.k_a'")):
        pth = write_torch_zip(tmp_path / "bad.pth", weights)
        with pytest.raises(ConvertError, match=re.escape(words)):
            convert(pth, tmp_path / "o.gguf", "f16", vocab=_vocab())
        assert convert_main([str(pth), "--outfile", str(tmp_path / "o.gguf"), "--vocab", str(_vocab())]) == 1
        assert not (tmp_path / "o.gguf").exists()
