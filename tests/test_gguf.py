"""Hostile GGUF files: the C reader (rwkvfast.gguf_metadata) and the loader (rwkvfast.Model)
must refuse each with a ValueError that names the file and what is wrong, never crash or hang.

Contract: gguf_metadata(path) -> {"version", "alignment", "data_offset", "metadata": {key: value},
"tensors": [{"name", "type" (e.g. "F32"), "shape" (ggml ne order), "offset" (relative to the
data section, as stored), "nbytes"}]}, with arrays as lists. Bad files are built byte by byte
here (see `build`), or rewritten from a valid make_model() file for the loader's checks.
"""
from __future__ import annotations

import re
import struct

import numpy as np
import pytest

import rwkvfast
from conftest import fixture_path
from rwkvfast.gguf_writer import GGUFValueType as VT, U32, Str, ggml_type, write_gguf
from rwkvfast.testing import make_model, read_gguf

F32, F16, I32, Q8_0 = (ggml_type(t).id for t in ("F32", "F16", "I32", "Q8_0"))


# ------------------------------------------------------------------ raw builder --

def u32(v: int) -> bytes: return struct.pack("<I", v)
def u64(v: int) -> bytes: return struct.pack("<Q", v)
def gstr(s: str | bytes, n: int | None = None) -> bytes:
    """A GGUF string; n overrides the length field."""
    b = s.encode() if isinstance(s, str) else s
    return u64(len(b) if n is None else n) + b


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + u32(vtype) + payload


def tinfo(name: str, ne: tuple[int, ...], gtype: int, offset: int, n_dims: int | None = None) -> bytes:
    return gstr(name) + u32(len(ne) if n_dims is None else n_dims) + b"".join(map(u64, ne)) + u32(gtype) + u64(offset)


def build(kvs=(), infos=(), data=b"", version=3, n_kv=None, n_tensors=None, alignment=32, pad=True) -> bytes:
    head = (b"GGUF" + u32(version) + u64(len(infos) if n_tensors is None else n_tensors)
            + u64(len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(infos))
    return head + bytes(-len(head) % alignment if pad else 0) + data


ARCH = kv("general.architecture", VT.STRING, gstr("rwkv6"))
NAME = kv("general.name", VT.STRING, gstr("small"))
TOKENS = kv("tokenizer.ggml.tokens", VT.ARRAY, u32(VT.STRING) + u64(3) + gstr("<s>") + gstr("a") + gstr("\\n"))
TYPES = kv("tokenizer.ggml.token_type", VT.ARRAY, u32(VT.INT32) + u64(3) + struct.pack("<3i", 3, 1, 1))
EPS = kv("rwkv6.attention.layer_norm_epsilon", VT.FLOAT32, struct.pack("<f", 1e-5))
KVS = [ARCH, NAME, TOKENS, TYPES, EPS]
# "w": F32 [8,2] = 64 bytes at 0; "q": Q8_0 [32] = 34 bytes at 64
INFOS = [tinfo("w", (8, 2), F32, 0), tinfo("q", (32,), Q8_0, 64)]
DATA = np.arange(16, dtype=np.float32).tobytes() + bytes(range(34))


def valid() -> bytes:
    return build(KVS, INFOS, DATA)


def with_tensor(info: bytes, data: bytes = DATA) -> bytes:
    """The valid file with the "q" tensor's info replaced."""
    return build(KVS, [INFOS[0], info], data)


def with_kv(extra: bytes) -> bytes:
    return build(KVS + [extra], INFOS, DATA)


def write(tmp_path, content: bytes, name: str = "bad.gguf"):
    p = tmp_path / name
    p.write_bytes(content)
    return p


def refused(path, match: str) -> str:
    """gguf_metadata(path) raises ValueError naming the path and matching `match`; returns the message."""
    with pytest.raises(ValueError) as e:
        rwkvfast.gguf_metadata(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    assert re.search(match, msg, re.I), msg
    return msg


# --------------------------------------------------------------------- positive --

def test_the_small_valid_file_reads_back(tmp_path):
    info = rwkvfast.gguf_metadata(write(tmp_path, valid(), "ok.gguf"))
    assert info["version"] == 3 and info["alignment"] == 32 and info["data_offset"] % 32 == 0
    meta = info["metadata"]
    assert meta["general.architecture"] == "rwkv6" and meta["general.name"] == "small"
    assert meta["tokenizer.ggml.tokens"] == ["<s>", "a", "\\n"]
    assert meta["tokenizer.ggml.token_type"] == [3, 1, 1]
    assert meta["rwkv6.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    assert [(t["name"], t["type"], tuple(t["shape"]), t["offset"], t["nbytes"]) for t in info["tensors"]] == \
        [("w", "F32", (8, 2), 0, 64), ("q", "Q8_0", (32,), 64, 34)]


def test_every_value_type_reads_back(tmp_path):
    from rwkvfast.gguf_writer import U8, I8, U16, I16, I32, U64, I64, F32 as F32v, F64, Array, Bool
    values = {"u8": (U8(255), 255), "i8": (I8(-128), -128), "u16": (U16(65535), 65535),
              "i16": (I16(-32768), -32768), "u32": (U32(2**32 - 1), 2**32 - 1), "i32": (I32(-2**31), -2**31),
              "f32": (F32v(0.5), 0.5), "bool": (Bool(True), True), "str": (Str("héllo"), "héllo"),
              "u64": (U64(2**64 - 1), 2**64 - 1), "i64": (I64(-2**63), -2**63), "f64": (F64(0.1), 0.1),
              "arr.str": (Array(VT.STRING, ["a", "", "\\x00"]), ["a", "", "\\x00"]),
              "arr.i32": (Array(VT.INT32, [3, -1]), [3, -1]), "arr.f32": (Array(VT.FLOAT32, [1.5]), [1.5]),
              "arr.bool": (Array(VT.BOOL, [True, False]), [True, False]),
              "arr.u64": (Array(VT.UINT64, [2**64 - 1]), [2**64 - 1]), "arr.empty": (Array(VT.UINT8, []), [])}
    path = write_gguf(tmp_path / "all.gguf", {k: v for k, (v, _) in values.items()},
                      [("t", "F16", (3, 2), bytes(12))], alignment=64)
    info = rwkvfast.gguf_metadata(path)
    assert info["metadata"] == {**{k: want for k, (_, want) in values.items()}, "general.alignment": 64}
    assert info["alignment"] == 64
    assert [(t["name"], t["type"], tuple(t["shape"]), t["nbytes"]) for t in info["tensors"]] == \
        [("t", "F16", (3, 2), 12)]


def test_version_2_and_other_alignments_are_accepted(tmp_path):
    assert rwkvfast.gguf_metadata(write(tmp_path, build(KVS, INFOS, DATA, version=2)))["version"] == 2
    al = kv("general.alignment", VT.UINT32, u32(128))
    data = DATA[:64] + bytes(64) + DATA[64:]
    info = rwkvfast.gguf_metadata(write(tmp_path, build(KVS + [al], [INFOS[0], tinfo("q", (32,), Q8_0, 128)],
                                                        data, alignment=128), "a128.gguf"))
    assert info["alignment"] == 128 and info["data_offset"] % 128 == 0


def test_no_tensors_is_a_valid_gguf(tmp_path):  # e.g. a vocab-only file
    info = rwkvfast.gguf_metadata(write(tmp_path, build(KVS)))
    assert info["tensors"] == [] and len(info["metadata"]) == len(KVS)


def test_tiny_fixture_matches_gguf_py():
    gguf = pytest.importorskip("gguf")
    path = fixture_path("tiny/gguf/tiny-F32.gguf")
    ours, r = rwkvfast.gguf_metadata(path), gguf.GGUFReader(path)
    assert (ours["version"], ours["alignment"], ours["data_offset"]) == (3, r.alignment, r.data_offset)
    theirs = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    assert list(ours["metadata"]) == list(theirs)
    for k, v in theirs.items():
        assert ours["metadata"][k] == (pytest.approx(v) if isinstance(v, float) else v), k
    assert [(t["name"], t["type"], tuple(t["shape"]), t["offset"], t["nbytes"]) for t in ours["tensors"]] == \
        [(t.name, t.tensor_type.name, tuple(int(d) for d in t.shape), int(t.data_offset) - r.data_offset,
          int(t.n_bytes)) for t in r.tensors]


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        rwkvfast.gguf_metadata(tmp_path / "nope.gguf")
    with pytest.raises((OSError, ValueError)):
        rwkvfast.gguf_metadata(tmp_path)  # a directory


# --------------------------------------------------------------- hostile files --

def _truncations() -> list:
    """Files cut short at many points. The cut-down headers keep counts that still fit the
    remaining bytes, so a reader cannot refuse them early on the counts alone."""
    full, hdr = valid(), 24
    one_kv = build([ARCH], pad=False)  # "general.architecture" = "rwkv6", then end of file
    one_arr = build([TOKENS], pad=False)
    long_name = build([ARCH], [tinfo("n" * 40, (8, 2, 1, 1), F32, 0)], pad=False)
    four_dims = build([ARCH], [tinfo("w", (8, 2, 1, 1), F32, 0)], pad=False)
    table = hdr + len(ARCH)
    cuts = {
        "empty": full[:0], "magic": full[:3], "version": full[:6], "counts": full[:20],
        "key": one_kv[:hdr + 8 + 10], "value type": one_kv[:hdr + 28 + 2],
        "string length": one_kv[:-9], "string value": one_kv[:-2], "string array": one_arr[:-5],
        "tensor name": long_name[:table + 8 + 30], "tensor dims": four_dims[:table + 9 + 4 + 8 * 2 + 3],
        "tensor type": four_dims[:table + 9 + 4 + 32 + 2], "tensor offset": four_dims[:-3],
        "padding": full[:hdr + sum(map(len, KVS + INFOS)) + 1], "first tensor data": full[:-len(DATA) + 10],
        "last tensor data": full[:-1],
        "whole file halved": full[:len(full) // 2],
    }
    return [pytest.param(content, id=name) for name, content in cuts.items()]


@pytest.mark.parametrize("content", _truncations())
def test_truncated(tmp_path, content):
    refused(write(tmp_path, content), r"truncat|too short|past the end|cannot fit|end of the file")


@pytest.mark.parametrize("magic", [b"GGML", b"gguf", b"\0\0\0\0", b"FUGG"])
def test_wrong_magic(tmp_path, magic):
    refused(write(tmp_path, magic + valid()[4:]), r"magic|not a GGUF")


@pytest.mark.parametrize("version", [0, 1, 4, 2**32 - 1])
def test_unsupported_version(tmp_path, version):
    refused(write(tmp_path, build(KVS, INFOS, DATA, version=version)), r"version")


@pytest.mark.parametrize("field", ["n_kv", "n_tensors"])
@pytest.mark.parametrize("count", [2**60, 2**63, 2**64 - 1])
def test_absurd_counts(tmp_path, field, count):
    refused(write(tmp_path, build(KVS, INFOS, DATA, **{field: count})),
            r"count|cannot fit|truncat|past the end")


@pytest.mark.parametrize("content", [
    pytest.param(build([gstr("general.architecture", n=2**63)]), id="key length 2^63"),
    pytest.param(build([gstr("k", n=2**64 - 1)]), id="key length 2^64-1"),
    pytest.param(with_kv(kv("s", VT.STRING, gstr("abc", n=2**64 - 1))), id="value length 2^64-1"),
    pytest.param(with_kv(kv("s", VT.STRING, gstr("abc", n=2**64 - 8))), id="value length wraps pointer"),
    pytest.param(build(KVS[:1] + [kv("s", VT.STRING, gstr("abc", n=4))], pad=False),
                 id="value length one past the end"),
    pytest.param(with_kv(kv("a", VT.ARRAY, u32(VT.STRING) + u64(2) + gstr("x") + gstr("y", n=2**62))),
                 id="string in an array"),
    pytest.param(with_tensor(gstr("q", n=2**63) + u32(1)), id="tensor name length"),
])
def test_string_length_past_the_end(tmp_path, content):
    refused(write(tmp_path, content), r"string|truncat|past the end|key|name")


@pytest.mark.parametrize("item, count", [
    (VT.UINT64, 2**61), (VT.UINT64, 2**61 + 1), (VT.UINT32, 2**62), (VT.UINT8, 2**64 - 1),
    (VT.STRING, 2**61), (VT.STRING, 2**64 - 1), (VT.FLOAT64, 2**63 + 1),
])
def test_array_count_overflow(tmp_path, item, count):
    refused(write(tmp_path, with_kv(kv("a", VT.ARRAY, u32(item) + u64(count) + bytes(64)))),
            r"array|past the end|cannot fit|truncat")


@pytest.mark.parametrize("payload", [
    pytest.param(("x", 13, u32(0)), id="type 13"),
    pytest.param(("x", 2**32 - 1, u32(0)), id="type 0xffffffff"),
    pytest.param(("x", VT.ARRAY, u32(13) + u64(1) + u32(0)), id="array of type 13"),
    pytest.param(("x", VT.ARRAY, u32(VT.ARRAY) + u64(1) + u32(VT.UINT8) + u64(1) + b"\0"), id="nested array"),
])
def test_unknown_value_type(tmp_path, payload):
    key, vtype, data = payload
    refused(write(tmp_path, with_kv(kv(key, vtype, data))), r"type")


@pytest.mark.parametrize("n_dims, ne", [(0, ()), (5, (32, 1, 1, 1, 1)), (2**32 - 1, (32,))])
def test_bad_n_dims(tmp_path, n_dims, ne):
    refused(write(tmp_path, with_tensor(tinfo("q", ne, Q8_0, 64, n_dims=n_dims))), r"n_dims|dimensions")


@pytest.mark.parametrize("ne, gtype", [
    pytest.param((0,), Q8_0, id="zero"), pytest.param((32, 0), Q8_0, id="zero second"),
    pytest.param((2**64 - 1,), Q8_0, id="-1"), pytest.param((32, 2**63), Q8_0, id="negative"),
    pytest.param((2**32, 2**32), Q8_0, id="elements 2^64"), pytest.param((2**31,) * 3, Q8_0, id="elements 2^93"),
    pytest.param((2**62, 2, 2), Q8_0, id="elements 2^64 wraps to 0"),
    pytest.param((2**62,), F32, id="bytes 2^64 wrap to 0"), pytest.param((2**61, 3), F32, id="bytes 3*2^63"),
])
def test_bad_dimensions(tmp_path, ne, gtype):
    refused(write(tmp_path, with_tensor(tinfo("q", ne, gtype, 64))), r"dimension|overflow|size|positive")


@pytest.mark.parametrize("gtype", [4, 5, 31, 36, 1000, 2**32 - 1])
def test_unknown_ggml_type(tmp_path, gtype):
    refused(write(tmp_path, with_tensor(tinfo("q", (32,), gtype, 64))), r"type")


def test_row_not_a_multiple_of_the_block_size(tmp_path):
    refused(write(tmp_path, with_tensor(tinfo("q", (48,), Q8_0, 64), DATA + bytes(64))), r"block")


@pytest.mark.parametrize("offset", [4, 33, 65, 2**64 - 1])
def test_tensor_offset_not_aligned(tmp_path, offset):
    refused(write(tmp_path, with_tensor(tinfo("q", (32,), Q8_0, offset))), r"align|past the end")


@pytest.mark.parametrize("offset", [96, 128, 2**40, 2**63, 2**64 - 32])
def test_tensor_offset_past_the_end(tmp_path, offset):
    refused(write(tmp_path, with_tensor(tinfo("q", (32,), Q8_0, offset))), r"past the end|end of the file")


def test_tensor_data_past_the_end(tmp_path):
    # starts inside the file, ends 30 bytes after it
    refused(write(tmp_path, with_tensor(tinfo("q", (64,), Q8_0, 64))), r"past the end|end of the file")


def test_duplicate_tensor_names(tmp_path):
    refused(write(tmp_path, build(KVS, [INFOS[0], tinfo("w", (32,), Q8_0, 64)], DATA)), r"duplicate.*\bw\b")


def test_duplicate_metadata_keys(tmp_path):
    refused(write(tmp_path, build(KVS + [NAME], INFOS, DATA)), r"duplicate.*general\.name")


@pytest.mark.parametrize("value", [
    pytest.param((VT.UINT32, u32(0)), id="0"), pytest.param((VT.UINT32, u32(3)), id="3"),
    pytest.param((VT.UINT32, u32(48)), id="48"), pytest.param((VT.UINT32, u32(2**31 + 1)), id="2^31+1"),
    pytest.param((VT.UINT64, u64(32)), id="u64"), pytest.param((VT.STRING, gstr("32")), id="string"),
])
def test_bad_alignment(tmp_path, value):
    vtype, payload = value
    refused(write(tmp_path, with_kv(kv("general.alignment", vtype, payload))), r"alignment")


# ----------------------------------------------------------------- the loader --

C = 128  # n_embd of the small model used below (head_size 64, 2 heads, ffn 448, vocab 300)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "small.gguf", n_layer=2, n_embd=C, vocab=300, seed=1)


def rewrite(src, dst, meta=None, drop=(), replace=None):
    """Copy a GGUF with metadata changes ({key: value or None to delete}), tensors dropped, and
    tensors replaced ({name: (ggml type, ne, data bytes)})."""
    g = read_gguf(src)
    md = dict(g.metadata)
    for k, v in (meta or {}).items():
        if v is None:
            md.pop(k)
        else:
            md[k] = v
    tensors = [(t.name, t.type, t.ne, t.data) for t in g.tensors if t.name not in drop]
    tensors = [(n, *(replace or {}).get(n, (ty, ne, d))) for n, ty, ne, d in tensors]
    return write_gguf(dst, md, tensors, alignment=g.alignment)


def model_refused(path, *names: str) -> str:
    with pytest.raises(ValueError) as e:
        rwkvfast.Model(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for n in names:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize("kwargs", [dict(), dict(dtype="F16"), dict(dtype="BF16"), dict(lerp_layout="separate")])
def test_valid_models_load(tmp_path, kwargs):
    path = make_model(tmp_path / "m.gguf", n_layer=2, n_embd=C, vocab=300, **kwargs)
    with rwkvfast.Model(path) as m:
        assert m.n_vocab == 300


@pytest.mark.parametrize("key", ["rwkv6.rescale_every_n_layers", "rwkv6.attention.layer_norm_epsilon",
                                 "rwkv6.context_length", "rwkv6.attention.head_count", "tokenizer.chat_template",
                                 "general.name"])
def test_optional_keys_may_be_missing(tmp_path, small_model, key):
    # llama.cpp reads rescale_every_n_layers (default 0) and layer_norm_epsilon as optional
    # (llama-model.cpp, LLM_ARCH_RWKV6: get_key(..., false)); the others it does not need
    rwkvfast.Model(rewrite(small_model, tmp_path / "m.gguf", meta={key: None})).close()


@pytest.mark.parametrize("name", ["blk.0.time_mix_key.weight", "blk.1.channel_mix_value.weight",
                                  "blk.0.time_mix_lerp_fused.weight", "blk.1.time_mix_first.weight",
                                  "blk.0.attn_norm_2.bias", "token_embd_norm.weight", "output.weight",
                                  "token_embd.weight", "output_norm.bias"])
def test_missing_tensor(tmp_path, small_model, name):
    # without lerp_fused the loader may look for the older time_mix_lerp_{w,k,v,r,g} and name those
    expect = "blk.0.time_mix_lerp_" if "lerp_fused" in name else name
    model_refused(rewrite(small_model, tmp_path / "m.gguf", drop=[name]), expect)


def test_missing_one_of_the_separate_lerps(tmp_path):
    src = make_model(tmp_path / "old.gguf", n_layer=1, n_embd=C, vocab=300, lerp_layout="separate")
    model_refused(rewrite(src, tmp_path / "m.gguf", drop=["blk.0.time_mix_lerp_r.weight"]),
                  "blk.0.time_mix_lerp_r.weight")


def test_more_layers_than_tensors(tmp_path, small_model):
    model_refused(rewrite(small_model, tmp_path / "m.gguf", meta={"rwkv6.block_count": U32(3)}), "blk.2.")


@pytest.mark.parametrize("name, ne", [
    ("blk.0.channel_mix_key.weight", (448, C)),  # transposed: same bytes, wrong shape
    ("token_embd.weight", (300, C)),
    ("blk.1.time_mix_w2.weight", (C, 32, 5)),
    ("blk.0.time_mix_first.weight", (2, 64)),
    ("blk.0.time_mix_lerp_fused.weight", (C, 5)),
    ("blk.0.attn_norm.weight", (C // 2, 2)),
])
def test_wrong_shape(tmp_path, small_model, name, ne):
    t = read_gguf(small_model).tensor(name)
    model_refused(rewrite(small_model, tmp_path / "m.gguf", replace={name: (t.type, ne, t.data)}), name)


def test_shape_disagreeing_with_the_metadata(tmp_path, small_model):
    msg = model_refused(rewrite(small_model, tmp_path / "m.gguf", meta={"rwkv6.embedding_length": U32(2 * C)}))
    assert "embedding_length" in msg or "blk." in msg or "token_embd" in msg, msg


@pytest.mark.parametrize("name", ["blk.0.attn_norm.weight", "blk.0.time_mix_key.weight", "token_embd.weight",
                                  "blk.1.time_mix_decay.weight"])
def test_integer_tensor_where_floats_are_expected(tmp_path, small_model, name):
    t = read_gguf(small_model).tensor(name)  # I32 has F32's size, so the file stays a valid GGUF
    model_refused(rewrite(small_model, tmp_path / "m.gguf", replace={name: (I32, t.ne, t.data)}), name)


def test_16_bit_norm_weight_is_loaded_or_refused_cleanly(tmp_path, small_model):
    # llama.cpp does not check types at load (ggml ops decide later); we either accept an F16
    # vector (converting it) or refuse it by name, but never misread it as F32.
    name = "blk.0.attn_norm.weight"
    t = read_gguf(small_model).tensor(name)
    path = rewrite(small_model, tmp_path / "m.gguf",
                   replace={name: (F16, t.ne, t.data.view(np.float32).astype(np.float16).tobytes())})
    try:
        rwkvfast.Model(path).close()
    except ValueError as e:
        assert name in str(e) and str(path) in str(e)


@pytest.mark.parametrize("arch", ["llama", "rwkv8", "rwkv5", ""])
def test_wrong_architecture(tmp_path, small_model, arch):
    path = rewrite(small_model, tmp_path / "m.gguf", meta={"general.architecture": Str(arch)})
    msg = model_refused(path, "architecture", f"'{arch}'" if arch else "")
    assert "rwkv6" in msg, msg  # says what it expected, too


def test_missing_architecture(tmp_path, small_model):
    model_refused(rewrite(small_model, tmp_path / "m.gguf", meta={"general.architecture": None}),
                  "general.architecture")


@pytest.mark.parametrize("key", ["rwkv6.block_count", "rwkv6.embedding_length", "rwkv6.feed_forward_length",
                                 "rwkv6.wkv.head_size", "rwkv6.time_mix_extra_dim",
                                 "rwkv6.time_decay_extra_dim"])
def test_missing_hyper_parameter(tmp_path, small_model, key):
    model_refused(rewrite(small_model, tmp_path / "m.gguf", meta={key: None}), key)


@pytest.mark.parametrize("key, value", [
    ("rwkv6.block_count", Str("2")), ("rwkv6.embedding_length", U32(0)), ("rwkv6.wkv.head_size", U32(0)),
    ("rwkv6.wkv.head_size", U32(48)),  # 128 is not a multiple of 48
    ("rwkv6.block_count", U32(0)), ("rwkv6.attention.layer_norm_epsilon", Str("1e-5")),
])
def test_bad_hyper_parameter(tmp_path, small_model, key, value):
    model_refused(rewrite(small_model, tmp_path / "m.gguf", meta={key: value}), key.split(".")[-1])


def test_model_refuses_what_the_reader_refuses(tmp_path, small_model):
    content = small_model.read_bytes()
    path = write(tmp_path, content[: len(content) // 2])
    with pytest.raises(ValueError, match="past the end|truncat"):
        rwkvfast.Model(path)


def test_an_rwkv6_file_that_claims_rwkv7_names_what_is_missing(tmp_path, small_model):
    path = rewrite(small_model, tmp_path / "m.gguf", meta={"general.architecture": Str("rwkv7")})
    model_refused(path, "missing metadata key 'rwkv7.block_count'")
