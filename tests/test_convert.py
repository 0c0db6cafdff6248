"""rwkvfast.convert: BlinkDL / Hugging Face / safetensors checkpoints to GGUF, as llama.cpp's converter."""
from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import rwkvfast
from rwkvfast.cli.convert import main as convert_main
from rwkvfast.convert import CheckpointError, ConvertError, convert, load_world_vocab, to_hf
from rwkvfast.gguf_reader import read_gguf
from rwkvfast.convert.safetensors import read_safetensors, write_safetensors
from rwkvfast.convert.pth import read_torch_checkpoint

from conftest import fixture_path, manifest_entry, reference_ids
from torch_zip import data_pkl, rwkv6_weights, write_torch_zip

NAME = "rwkv6-synthetic-tiny"  # the --model-name the fixtures were converted with


def _tensors_equal(a_path, b_path):
    a, b = read_gguf(a_path), read_gguf(b_path)
    assert sorted(t.name for t in a.tensors) == sorted(t.name for t in b.tensors)
    for t in a.tensors:
        u = b.tensor(t.name)
        assert (t.type, t.ne) == (u.type, u.ne), t.name
        assert bytes(t.data) == bytes(u.data), t.name
    return a, b


@pytest.mark.parametrize("outtype", ["F32", "F16"])
def test_pth_converts_to_llama_cpp_file_byte_for_byte(tmp_path, outtype):
    pth = fixture_path("tiny/tiny.pth")
    ref = fixture_path(f"tiny/gguf/tiny-{outtype}.gguf")
    out = convert(pth, tmp_path / "o.gguf", outtype.lower(), model_name=NAME)
    a, b = _tensors_equal(out, ref)
    assert list(a.metadata) == list(b.metadata)
    for k, v in b.metadata.items():
        assert a.metadata[k].type == v.type and np.array_equal(np.asarray(a.metadata[k].value, dtype=object),
                                                                np.asarray(v.value, dtype=object)), k
    # tensor order, alignment and padding too: the whole file is llama.cpp's
    assert out.read_bytes() == ref.read_bytes()


def test_converted_model_matches_reference_logits(tmp_path):
    out = convert(fixture_path("tiny/tiny.pth"), tmp_path / "o.gguf", "f32")
    ref = np.load(fixture_path("tiny/ref/rwkv_fp32.npy"))
    with rwkvfast.Model(out, n_threads=2) as m:
        got = m.forward(reference_ids(), m.new_state(), all_logits=True)
    peer = manifest_entry("F32")["observed"]  # llama.cpp vs this reference
    assert float(np.abs(got - ref).max()) <= peer["max_abs"]
    assert (got.argmax(1) == ref.argmax(1)).all()


@pytest.mark.parametrize("outtype", ["Q8_0", "Q4_0", "Q5_1"])
def test_deterministic_quant_outtypes_equal_llama_quantize(tmp_path, outtype):
    ref = fixture_path(f"tiny/gguf/tiny-{outtype}.gguf")
    out = convert(fixture_path("tiny/tiny.pth"), tmp_path / "o.gguf", outtype.lower())
    _tensors_equal(out, ref)
    assert read_gguf(out).metadata["general.file_type"].value == read_gguf(ref).metadata["general.file_type"].value


def test_k_quant_outtype_equals_quantizing_the_f32_file(tmp_path):
    f32 = convert(fixture_path("tiny/tiny.pth"), tmp_path / "f32.gguf", "f32")
    direct = convert(fixture_path("tiny/tiny.pth"), tmp_path / "q.gguf", "q4_k_m")
    via = rwkvfast.quantize(f32, tmp_path / "via.gguf", "Q4_K_M").output
    _tensors_equal(direct, via)


# ------------------------------------------------------------------ other inputs --

def _synthetic(tmp_path, dtype="F32", **shape):
    """A random checkpoint, with the first V - 1 World tokens as its vocabulary file beside it."""
    w = rwkv6_weights(**shape)
    V = w["emb.weight"].shape[0]
    lines = (Path(rwkvfast.__file__).parent / "data/rwkv_vocab_v20230424.txt").read_text(encoding="utf-8")
    (tmp_path / "rwkv_vocab_v20230424.txt").write_text("".join(lines.splitlines(True)[:V - 1]), encoding="utf-8")
    return write_torch_zip(tmp_path / f"m-{dtype}.pth", w, dtype=dtype), w


def test_7b_style_lora_dims_are_read_from_the_tensors(tmp_path):
    pth, w = _synthetic(tmp_path, C=128, F=448, D=64, Dd=128, n_layer=3)
    out = convert(pth, tmp_path / "o.gguf", "f16", rescale_every=2)
    g = read_gguf(out)
    md = {k: v.value for k, v in g.metadata.items()}
    assert (md["rwkv6.time_mix_extra_dim"], md["rwkv6.time_decay_extra_dim"]) == (64, 128)
    assert (md["rwkv6.block_count"], md["rwkv6.embedding_length"], md["rwkv6.feed_forward_length"]) == (3, 128, 448)
    assert md["rwkv6.rescale_every_n_layers"] == 2
    assert g.tensor("blk.0.time_mix_w2.weight").ne == (64, 128, 5)
    # layer 2 with rescale_every 2: divided by 2, exactly
    np.testing.assert_array_equal(g.tensor("blk.2.time_mix_output.weight").array(),
                                  (w["blocks.2.att.output.weight"] / 2).astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(g.tensor("blk.1.channel_mix_value.weight").array(),
                                  w["blocks.1.ffn.value.weight"].astype(np.float16).astype(np.float32))
    fused = g.tensor("blk.1.time_mix_lerp_fused.weight").array()
    np.testing.assert_array_equal(fused[3, 0, 0], w["blocks.1.att.time_maa_r"].reshape(-1))  # order w k v r g
    with rwkvfast.Model(out, n_threads=1) as m:
        assert np.isfinite(m.forward([1, 2, 3], m.new_state())).all()


def test_bf16_checkpoint_converts_exactly(tmp_path):
    pth, w = _synthetic(tmp_path, "BF16")
    g = read_gguf(convert(pth, tmp_path / "o.gguf", "f32"))
    t = read_torch_checkpoint(pth)["blocks.0.att.key.weight"]
    assert t.dtype == "BF16"
    np.testing.assert_array_equal(g.tensor("blk.0.time_mix_key.weight").array(), t.f32())
    bf = read_gguf(convert(pth, tmp_path / "b.gguf", "bf16"))
    assert bytes(bf.tensor("blk.0.time_mix_key.weight").data) == t.raw().tobytes()


def test_safetensors_hf_dir_and_shards_give_the_same_file(tmp_path):
    pth, w = _synthetic(tmp_path)
    want = convert(pth, tmp_path / "from-pth.gguf", "f16", model_name="m").read_bytes()
    # one .safetensors file with BlinkDL names
    st = write_safetensors(tmp_path / "m.safetensors",
                           [(k, "F32", v.shape, (lambda v=v: iter([v]))) for k, v in w.items()])
    assert convert(st, tmp_path / "a.gguf", "f16", model_name="m").read_bytes() == want
    # the Hugging Face layout (--to-hf), then converted
    hf = to_hf(pth, tmp_path / "hf")
    assert json.loads((hf / "config.json").read_text())["num_hidden_layers"] == 2
    assert "rwkv.blocks.0.attention.key.weight" in read_safetensors(hf / "model.safetensors")
    assert convert(hf, tmp_path / "b.gguf", "f16", model_name="m").read_bytes() == want
    # a Hugging Face directory with pytorch_model.bin (a torch zip with the HF names)
    binned = tmp_path / "bin"
    binned.mkdir()
    from rwkvfast.convert.checkpoint import blink_to_hf as _blink_to_hf
    write_torch_zip(binned / "pytorch_model.bin", {_blink_to_hf(k): v for k, v in w.items()})
    for f in ("config.json", "rwkv_vocab_v20230424.txt"):
        (binned / f).write_text((hf / f).read_text(encoding="utf-8"), encoding="utf-8")
    assert convert(binned, tmp_path / "d.gguf", "f16", model_name="m").read_bytes() == want
    # sharded, with an index
    shard = tmp_path / "sharded"
    shard.mkdir()
    tensors = read_safetensors(hf / "model.safetensors")
    names = list(tensors)
    parts = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for fname, keys in parts.items():
        write_safetensors(shard / fname, [(k, "F32", tensors[k].shape, (lambda k=k: iter([tensors[k].raw()])))
                                          for k in keys])
    (shard / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: f for f, ks in parts.items() for k in ks}}))
    for f in ("config.json", "rwkv_vocab_v20230424.txt"):
        (shard / f).write_text((hf / f).read_text(encoding="utf-8"), encoding="utf-8")
    assert convert(shard, tmp_path / "c.gguf", "f16", model_name="m").read_bytes() == want


def test_squeezed_mixing_vectors_are_accepted(tmp_path):
    w = rwkv6_weights()
    want = convert(_synthetic(tmp_path)[0], tmp_path / "a.gguf", "f32", model_name="m").read_bytes()
    sq = {k: (v.reshape(-1) if v.shape[:2] == (1, 1) else v) for k, v in w.items()}
    (tmp_path / "sq").mkdir()
    (tmp_path / "sq" / "rwkv_vocab_v20230424.txt").write_bytes((tmp_path / "rwkv_vocab_v20230424.txt").read_bytes())
    pth = write_torch_zip(tmp_path / "sq" / "m-F32.pth", sq)
    assert convert(pth, tmp_path / "b.gguf", "f32", model_name="m").read_bytes() == want


def test_config_json_must_agree_with_the_tensors(tmp_path):
    pth, _ = _synthetic(tmp_path)
    hf = to_hf(pth, tmp_path / "hf")
    cfg = json.loads((hf / "config.json").read_text())
    cfg["hidden_size"] = 4096
    (hf / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConvertError, match="hidden_size"):
        convert(hf, tmp_path / "o.gguf")
    assert not (tmp_path / "o.gguf").exists()


def test_inconsistent_or_incomplete_checkpoints_are_refused(tmp_path):
    w = rwkv6_weights()
    bad = dict(w)
    bad["blocks.1.att.key.weight"] = np.zeros((128, 64), np.float32)
    with pytest.raises(ConvertError, match=r"blocks\.1\.att\.key\.weight.*\[128, 128\]"):
        convert(write_torch_zip(tmp_path / "a.pth", bad), tmp_path / "o.gguf")
    missing = {k: v for k, v in w.items() if k != "ln_out.bias"}
    with pytest.raises(ConvertError, match="missing tensor 'ln_out.bias'"):
        convert(write_torch_zip(tmp_path / "b.pth", missing), tmp_path / "o.gguf")
    assert not (tmp_path / "o.gguf").exists()


# ---------------------------------------------------------------------- safety --

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["os.system", "builtins.eval", "nested"])
def test_pickle_that_names_code_is_refused_and_nothing_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    if how == "os.system":
        payload = pickle.dumps({"emb.weight": _Evil(marker)}, protocol=2)
    elif how == "builtins.eval":
        payload = b"\x80\x02cbuiltins\neval\nX" + len(f"open('{marker}','w')").to_bytes(4, "little") + \
            f"open('{marker}','w')".encode() + b"\x85R."
    else:  # a legitimate tensor first, the payload inside its hooks argument
        good = data_pkl([("emb.weight", "F32", (2, 2), "0", 4)])
        payload = good[:-2] + pickle.dumps(_Evil(marker), protocol=2)[2:-1] + b"u."
    pth = write_torch_zip(tmp_path / "evil.pth", {"emb.weight": np.zeros((2, 2), np.float32)}, pickle_bytes=payload)
    with pytest.raises(CheckpointError, match="refusing to run it|cannot unpickle"):
        convert(pth, tmp_path / "o.gguf")
    assert not marker.exists()
    assert not (tmp_path / "o.gguf").exists()


def test_malformed_archives_give_clear_errors(tmp_path):
    w = {"emb.weight": np.ones((4, 4), np.float32)}
    good = write_torch_zip(tmp_path / "good.pth", w)
    raw = good.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="not a torch zip checkpoint"):
        read_torch_checkpoint(tmp_path / "trunc.pth")
    # a storage claiming more elements than its entry holds
    big = write_torch_zip(tmp_path / "big.pth", w, numel_override={"emb.weight": 1 << 20})
    with pytest.raises(CheckpointError, match="holds 64 bytes"):
        read_torch_checkpoint(big)
    # a tensor bigger than its storage
    pkl = data_pkl([("emb.weight", "F32", (8, 8), "0", 16)])
    with pytest.raises(CheckpointError, match="runs past its storage"):
        read_torch_checkpoint(write_torch_zip(tmp_path / "shape.pth", w, pickle_bytes=pkl))
    # an int64 storage
    pkl = data_pkl([("emb.weight", "F32", (4, 4), "0", 16)]).replace(b"FloatStorage", b"LongStorage")
    with pytest.raises(CheckpointError, match="torch.LongStorage"):
        read_torch_checkpoint(write_torch_zip(tmp_path / "long.pth", w, pickle_bytes=pkl))
    # local header offset past the end
    bad = bytearray(raw)
    z = zipfile.ZipFile(good)
    info = z.getinfo("archive/data/0")
    bad[info.header_offset:info.header_offset + 4] = b"XXXX"
    (tmp_path / "hdr.pth").write_bytes(bytes(bad))
    with pytest.raises(CheckpointError, match="no local header"):
        read_torch_checkpoint(tmp_path / "hdr.pth")


def test_released_tensors_stay_readable(tmp_path):
    ck = read_torch_checkpoint(fixture_path("tiny/tiny.pth"))
    t = ck["head.weight"]
    before = t.f32()
    t.release()  # drops the mapped pages; reading must fault them back from the file
    np.testing.assert_array_equal(t.f32(), before)


def test_safetensors_offsets_are_checked(tmp_path):
    p = write_safetensors(tmp_path / "a.safetensors", [("x", "F32", (4,), lambda: iter([np.ones(4, np.float32)]))])
    raw = bytearray(p.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    head = json.loads(raw[8:8 + n])
    head["x"]["data_offsets"] = [0, 64]
    blob = json.dumps(head).encode()
    (tmp_path / "b.safetensors").write_bytes(len(blob).to_bytes(8, "little") + blob + raw[8 + n:])
    with pytest.raises(CheckpointError, match="outside"):
        read_safetensors(tmp_path / "b.safetensors")
    (tmp_path / "c.safetensors").write_bytes((1 << 40).to_bytes(8, "little"))
    with pytest.raises(CheckpointError, match="does not fit"):
        read_safetensors(tmp_path / "c.safetensors")


# ------------------------------------------------------------ outputs and CLI --

def test_existing_output_is_kept_without_force(tmp_path, capsys):
    pth, _ = _synthetic(tmp_path)
    out = tmp_path / "o.gguf"
    out.write_bytes(b"user data")
    with pytest.raises(FileExistsError):
        convert(pth, out)
    assert out.read_bytes() == b"user data"
    assert convert_main([str(pth), "--outfile", str(out)]) == 1
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"user data"
    assert convert_main([str(pth), "--outfile", str(out), "--force", "--outtype", "q8_0"]) == 0
    assert read_gguf(out).metadata["general.file_type"].value == 7
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_cli_default_name_and_errors(tmp_path, capsys):
    pth, _ = _synthetic(tmp_path)
    assert convert_main([str(pth)]) == 0
    assert (tmp_path / "m-F32-F16.gguf").exists()
    assert "time_mix_lerp_fused" in capsys.readouterr().err
    assert convert_main([str(tmp_path / "nope.pth")]) == 1
    assert "error:" in capsys.readouterr().err


def test_packaged_vocabulary_is_the_official_world_vocabulary():
    vocab = load_world_vocab()
    assert len(vocab) == 65529 and vocab[260] == b"\n\n" and vocab[0] == b"\x00"
    head = load_world_vocab(fixture_path("tiny/rwkv_vocab_v20230424.txt"))  # the official file, truncated
    assert vocab[:len(head)] == head
    # and the token texts llama.cpp's converter wrote from it
    g = read_gguf(fixture_path("vocab/rwkv-world-65536-vocab.gguf"))
    toks = list(g.metadata["tokenizer.ggml.tokens"].value)
    assert toks[1:65530] == [repr(b)[2:-1] for b in vocab]


def test_vocabulary_larger_than_the_model_is_refused(tmp_path):
    pth, _ = _synthetic(tmp_path)  # 300-row embedding
    with pytest.raises(ConvertError, match="65530 tokens"):
        convert(pth, tmp_path / "o.gguf", vocab=Path(rwkvfast.__file__).parent / "data/rwkv_vocab_v20230424.txt")
    assert not (tmp_path / "o.gguf").exists()
