"""Our GGUF writer and synthetic models, checked against gguf-py's GGUFReader and the fixtures.

gguf-py (the llama.cpp authors' package) is the independent oracle here; rwkvfast itself
never imports it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGUFReader  # noqa: E402
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType  # noqa: E402

from conftest import fixture_path  # noqa: E402
from rwkvfast.gguf_writer import (GGML_TYPES, GGUFValueType as VT, U8, I8, U16, I16, U32, I32,  # noqa: E402
                                  U64, I64, F32, F64, Array, Bool, Str, as_value, bf16_to_f32,
                                  f32_to_bf16, f32_to_bf16_bytes, write_gguf)
from rwkvfast.testing import (escape_token, is_big_matrix, make_model, read_gguf,  # noqa: E402
                              retype_gguf, vocab_tokens)

FIXTURE_F32 = "tiny/gguf/tiny-F32.gguf"


def field_types(r: GGUFReader) -> list[tuple[str, list[str]]]:
    """[(key, [value type, element type...])] of a file's metadata, header fields left out."""
    return [(k, [t.name for t in f.types]) for k, f in r.fields.items() if not k.startswith("GGUF.")]


def tensor_table(r: GGUFReader) -> list[tuple]:
    """[(name, type, ne, offset relative to the data section)]."""
    return [(t.name, t.tensor_type.name, tuple(int(d) for d in t.shape), int(t.data_offset) - r.data_offset)
            for t in r.tensors]


def raw(t) -> bytes:
    return np.ascontiguousarray(t.data).tobytes()


# ------------------------------------------------------------------------ writer --

ALL_VALUES = [
    ("u8", U8(255), "UINT8", 255), ("i8", I8(-128), "INT8", -128), ("u16", U16(65535), "UINT16", 65535),
    ("i16", I16(-32768), "INT16", -32768), ("u32", U32(2**32 - 1), "UINT32", 2**32 - 1),
    ("i32", I32(-2**31), "INT32", -2**31), ("f32", F32(0.5), "FLOAT32", 0.5),
    ("bool", Bool(True), "BOOL", True), ("str", Str("héllo ✓"), "STRING", "héllo ✓"),
    ("u64", U64(2**64 - 1), "UINT64", 2**64 - 1), ("i64", I64(-2**63), "INT64", -2**63),
    ("f64", F64(1 / 3), "FLOAT64", 1 / 3),
    ("arr.str", Array(VT.STRING, ["a", "", "\\x00"]), "ARRAY.STRING", ["a", "", "\\x00"]),
    ("arr.i32", Array(VT.INT32, [3, 1, -1]), "ARRAY.INT32", [3, 1, -1]),
    ("arr.u8", Array(VT.UINT8, np.arange(5, dtype=np.uint8)), "ARRAY.UINT8", [0, 1, 2, 3, 4]),
    ("arr.f32", Array(VT.FLOAT32, [1.5, -2.0]), "ARRAY.FLOAT32", [1.5, -2.0]),
    ("arr.bool", Array(VT.BOOL, [True, False]), "ARRAY.BOOL", [True, False]),
    ("arr.u64", Array(VT.UINT64, [2**64 - 1]), "ARRAY.UINT64", [2**64 - 1]),
    ("arr.f64", Array(VT.FLOAT64, [0.1]), "ARRAY.FLOAT64", [0.1]),
    ("arr.empty", Array(VT.INT32, []), "ARRAY", []),  # GGUFReader lists no element type when empty
    # inferred types
    ("inf.int", 7, "UINT32", 7), ("inf.neg", -7, "INT32", -7), ("inf.big", 2**40, "UINT64", 2**40),
    ("inf.float", 0.25, "FLOAT32", 0.25), ("inf.bool", False, "BOOL", False), ("inf.str", "s", "STRING", "s"),
    ("inf.list", ["x", "y"], "ARRAY.STRING", ["x", "y"]), ("inf.ints", [1, -2], "ARRAY.INT32", [1, -2]),
    ("inf.np", np.float64(2.5), "FLOAT64", 2.5), ("inf.nparr", np.zeros(2, np.int16), "ARRAY.INT16", [0, 0]),
]

rng = np.random.default_rng(0)
TENSORS = [
    ("f32", "F32", (8, 3), rng.standard_normal((3, 8)).astype(np.float32)),
    ("f16", "F16", (5,), rng.standard_normal(5).astype(np.float16)),
    ("bf16", 30, (4, 1, 2), np.arange(8, dtype=np.uint16)),
    ("q8_0", "Q8_0", (64, 2), rng.integers(0, 256, 4 * 34, dtype=np.uint8).tobytes()),
    ("q4_k", "Q4_K", (256,), bytes(range(144))),
    ("i32", "I32", (3,), np.int32([1, -2, 3])),
    ("streamed", "F32", (4, 4), lambda: (np.full(8, i, np.float32) for i in range(2))),
]


def expected_bytes(data) -> bytes:
    if callable(data):
        return b"".join(c.tobytes() for c in data())
    return data if isinstance(data, bytes) else data.tobytes()


@pytest.mark.parametrize("alignment", [32, 8, 64, 4096])
def test_every_value_type_and_tensor_type_round_trip(tmp_path, alignment):
    path = write_gguf(tmp_path / "all.gguf", [(k, v) for k, v, _, _ in ALL_VALUES], TENSORS, alignment=alignment)
    r = GGUFReader(path)
    keys = [k for k, *_ in ALL_VALUES] + (["general.alignment"] if alignment != 32 else [])
    assert [k for k, _ in field_types(r)] == keys
    for key, _, typ, val in ALL_VALUES:
        f = r.fields[key]
        assert ".".join(t.name for t in f.types) == typ, key
        got = f.contents()
        assert got == (pytest.approx(val) if "FLOAT" in typ else val), key
    assert r.fields["arr.empty"].parts[3].tolist() == [VT.INT32]  # element type, then count 0
    if alignment != 32:
        assert r.fields["general.alignment"].types[0].name == "UINT32"
    assert r.alignment == alignment and r.data_offset % alignment == 0
    assert r.fields["GGUF.version"].contents() == 3
    assert len(r.tensors) == len(TENSORS)
    for t, (name, typ, ne, data) in zip(r.tensors, TENSORS):
        assert t.name == name
        assert t.tensor_type == (GGMLQuantizationType[typ] if isinstance(typ, str) else typ)
        assert tuple(int(d) for d in t.shape) == ne
        assert (t.data_offset - r.data_offset) % alignment == 0
        assert raw(t) == expected_bytes(data), name


def test_ggml_type_table_matches_gguf_py():
    ours = {t.id: (t.name, t.block_size, t.type_size) for t in GGML_TYPES.values()}
    theirs = {int(q): (q.name, *GGML_QUANT_SIZES[q]) for q in GGMLQuantizationType}
    # gguf-py still has Q8_1's old float d/s (40 bytes); ggml's block_q8_1 is 2 halfs + 32 (36).
    # Q8_1 is an activation format that never appears in a file.
    assert theirs.pop(9) == ("Q8_1", 32, 40) and ours.pop(9) == ("Q8_1", 32, 36)
    assert ours == theirs


@pytest.mark.parametrize("value, vtype", [
    (5, VT.UINT32), (2**32, VT.UINT64), (-1, VT.INT32), (-2**31 - 1, VT.INT64), (1.5, VT.FLOAT32),
    (True, VT.BOOL), ("s", VT.STRING), (b"\xff", VT.STRING), (np.uint8(1), VT.UINT8),
    (np.float32(1), VT.FLOAT32), ([1.0, 2], VT.ARRAY), ([True], VT.ARRAY),
])
def test_inferred_types(value, vtype):
    assert as_value(value).type == vtype


@pytest.mark.parametrize("value", [2**64, -2**63 - 1, [], [1, "a"], {"a": 1}, None, [[1]]])
def test_values_without_a_type_are_refused(value):
    with pytest.raises(ValueError):
        as_value(value)


@pytest.mark.parametrize("value", [U8(256), I8(-129), U32(-1), I64(2**63), F32(1e300), U32(1.5),
                                   Array(VT.UINT8, [300]), Array(VT.INT32, [1.5]), Array(VT.ARRAY, [[1]])])
def test_values_that_do_not_fit_their_type(tmp_path, value):
    with pytest.raises(ValueError, match="'k'"):
        write_gguf(tmp_path / "x.gguf", {"k": value}, [])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tensors, match", [
    ([("a", "F32", (4,), bytes(12))], "12 bytes"),
    ([("a", "F32", (4,), bytes(20))], "more than"),
    ([("a", "F32", (4,), lambda: iter([bytes(8), bytes(8), bytes(8)]))], "more than"),
    ([("a", "F32", (4,), bytes(16)), ("a", "F32", (4,), bytes(16))], "duplicated"),
    ([("a" * 64, "F32", (4,), bytes(16))], "longer"),
    ([("a", "F32", (0,), b"")], "positive"),
    ([("a", "F32", (1, 1, 1, 1, 1), bytes(4))], "1 to 4"),
    ([("a", "Q8_0", (48,), bytes(51))], "block size"),
    ([("a", "Q4_2", (32,), bytes(20))], "unknown ggml type"),
    ([("a", 4, (32,), bytes(20))], "unknown ggml type"),
])
def test_bad_tensors_leave_the_destination_untouched(tmp_path, tensors, match):
    dst = tmp_path / "model.gguf"
    dst.write_bytes(b"precious")
    with pytest.raises(ValueError, match=match):
        write_gguf(dst, {"general.architecture": "rwkv6"}, tensors)
    assert dst.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]  # no temporary left behind


def test_failure_while_streaming_leaves_nothing(tmp_path):
    def boom():
        yield np.zeros(2, np.float32)
        raise RuntimeError("generator failed")
    dst = tmp_path / "model.gguf"
    with pytest.raises(RuntimeError):
        write_gguf(dst, {}, [("a", "F32", (4,), boom)])
    assert list(tmp_path.iterdir()) == []


def test_writer_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="power of two"):
        write_gguf(tmp_path / "x.gguf", {}, [], alignment=3)
    with pytest.raises(ValueError, match="duplicate"):
        write_gguf(tmp_path / "x.gguf", [("k", 1), ("k", 2)], [])
    with pytest.raises(ValueError, match="alignment"):
        write_gguf(tmp_path / "x.gguf", {"general.alignment": U32(64)}, [], alignment=32)
    assert list(tmp_path.iterdir()) == []
    # an explicit general.alignment that agrees is kept where it is
    r = GGUFReader(write_gguf(tmp_path / "x.gguf", {"general.alignment": U32(64), "a": 1}, [], alignment=64))
    assert [k for k, _ in field_types(r)] == ["general.alignment", "a"]


# ---------------------------------------------------------------------- bfloat16 --

def test_bf16_rounds_to_nearest_even():
    one_ulp = 2.0**-7  # bf16 spacing at 1.0
    cases = {
        1.0: 0x3F80,
        1 + one_ulp / 2: 0x3F80,  # tie, even neighbour below
        1 + 3 * one_ulp / 2: 0x3F82,  # tie, even neighbour above
        1 + one_ulp / 2 + 2.0**-20: 0x3F81,  # just above the tie
        1 + one_ulp / 2 - 2.0**-20: 0x3F80,  # just below the tie
        -(1 + 3 * one_ulp / 2): 0xBF82,
        -0.0: 0x8000,
        float("inf"): 0x7F80,
        float("-inf"): 0xFF80,
        3.4028234663852886e38: 0x7F80,  # FLT_MAX rounds up to infinity
        1e-45: 0x0000,  # smallest subnormal rounds to zero
    }
    x = np.array(list(cases), dtype=np.float32)
    assert [hex(v) for v in f32_to_bf16(x)] == [hex(v) for v in cases.values()]
    nans = np.array([0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0x7FFFFFFF], dtype=np.uint32).view(np.float32)
    assert np.isnan(bf16_to_f32(f32_to_bf16(nans))).all()  # a signalling NaN must not become inf
    exact = np.array([1.0, -2.5, 0.0078125], np.float32)
    assert np.array_equal(bf16_to_f32(f32_to_bf16(exact)), exact)


def test_bf16_matches_gguf_py():
    x = np.random.default_rng(1).standard_normal(100_000).astype(np.float32) * 1e3
    x[:4] = [np.nan, np.inf, -np.inf, 0.0]
    x[4:8] = np.array([0x7F800001, 0xFFC00001, 0x00000001, 0x807FFFFF], np.uint32).view(np.float32)
    assert f32_to_bf16_bytes(x) == gguf.quants.quantize(x, GGMLQuantizationType.BF16).tobytes()


# ----------------------------------------------------------------- make_model --

def test_tiny_model_has_the_fixture_layout(tmp_path):
    fixture = GGUFReader(fixture_path(FIXTURE_F32))
    ours = GGUFReader(make_model(tmp_path / "tiny.gguf", n_layer=2, n_embd=256, vocab=1024, dtype="F32"))
    assert field_types(ours) == field_types(fixture)
    assert tensor_table(ours) == tensor_table(fixture)  # names, types, ne, order, offsets
    for key in ("general.architecture", "rwkv6.block_count", "rwkv6.embedding_length",
                "rwkv6.feed_forward_length", "rwkv6.wkv.head_size", "rwkv6.time_mix_extra_dim",
                "rwkv6.time_decay_extra_dim", "rwkv6.rescale_every_n_layers", "rwkv6.context_length",
                "rwkv6.attention.head_count", "general.file_type", "general.size_label",
                "tokenizer.ggml.model", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.eot_token_id", "tokenizer.chat_template", "general.quantization_version"):
        assert ours.fields[key].contents() == fixture.fields[key].contents(), key
    assert ours.fields["rwkv6.attention.layer_norm_epsilon"].contents() == pytest.approx(1e-5)
    tokens = ours.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[:362] == fixture.fields["tokenizer.ggml.tokens"].contents()[:362]  # World vocab's start
    assert tokens[261] == "\\n\\n"
    assert ours.fields["tokenizer.ggml.token_type"].contents() == [3] + [1] * 1023
    # weights have the fixture's scales (README: "The tiny model")
    for t_ours, t_fix in zip(ours.tensors, fixture.tensors):
        a, b = np.asarray(t_ours.data, np.float64), np.asarray(t_fix.data, np.float64)
        assert a.std() == pytest.approx(b.std(), rel=0.2, abs=0.01), t_ours.name
        assert a.mean() == pytest.approx(b.mean(), rel=0.2, abs=0.05), t_ours.name


@pytest.mark.parametrize("dtype, file_type", [("F16", 1), ("BF16", 32)])
def test_16_bit_models_follow_the_converter(tmp_path, dtype, file_type):
    expected = json.loads(fixture_path("tiny/gguf/tensor_types.json").read_text())["F16"]
    r = GGUFReader(make_model(tmp_path / "m.gguf", dtype=dtype, seed=3))
    got = {t.name: t.tensor_type.name for t in r.tensors}
    assert got == {k: (dtype if v == "F16" else v) for k, v in expected.items()}
    assert all(is_big_matrix(k) == (v == "F16") for k, v in expected.items())
    assert r.fields["general.file_type"].contents() == file_type
    # the same seed gives the same weights in every dtype: a 16-bit model is the F32 one, retyped
    f32 = make_model(tmp_path / "m32.gguf", dtype="F32", seed=3)
    assert retype_gguf(f32, tmp_path / "re.gguf", dtype).read_bytes() == (tmp_path / "m.gguf").read_bytes()


def test_separate_lerp_layout(tmp_path):
    r = GGUFReader(make_model(tmp_path / "old.gguf", n_layer=1, n_embd=128, vocab=300, lerp_layout="separate"))
    table = {name: ne for name, _, ne, _ in tensor_table(r)}
    assert "blk.0.time_mix_lerp_fused.weight" not in table
    for x in "wkvrg":
        assert table[f"blk.0.time_mix_lerp_{x}.weight"] == (128,)
    assert table["blk.0.time_mix_lerp_x.weight"] == (128,)


def test_other_shapes_and_no_tokenizer(tmp_path):
    r = GGUFReader(make_model(tmp_path / "m.gguf", n_layer=7, n_embd=96, head_size=32, vocab=50,
                              tokenizer=False, rescale_every=3, seed=5))
    assert not any(k.startswith("tokenizer.") for k, _ in field_types(r))
    table = {name: ne for name, _, ne, _ in tensor_table(r)}
    assert table["blk.6.time_mix_first.weight"] == (32, 3)
    assert table["blk.6.channel_mix_key.weight"] == (96, 320)  # int(96*3.5)//32*32
    assert table["blk.0.time_mix_w2.weight"] == (32, 96, 5)
    assert table["token_embd.weight"] == (96, 50)
    assert r.fields["rwkv6.feed_forward_length"].contents() == 320
    # the converter's rescale: layer 6's output matrices are 2^(6//3) = 4 times smaller than layer 0's
    std = {t.name: np.std(t.data) for t in r.tensors}
    assert std["blk.6.time_mix_output.weight"] * 4 == pytest.approx(std["blk.0.time_mix_output.weight"], rel=0.1)


def test_4096_wide_models_get_the_bigger_lora_dims():
    from rwkvfast.testing import _tensor_plan  # the plan only: a 4096-wide file is too big for a unit test
    plan = {name: ne for name, ne, _ in _tensor_plan(1, 4096, 14336, 65536, 64, 64, 128, 6, "fused")}
    assert plan["blk.0.time_mix_w1.weight"] == (4096, 320)
    assert plan["blk.0.time_mix_decay_w2.weight"] == (128, 4096)


@pytest.mark.parametrize("kwargs", [
    dict(n_embd=250), dict(head_size=0), dict(head_size=48), dict(n_layer=0), dict(n_layer=2.5),
    dict(n_layer=True), dict(vocab=200), dict(vocab=0, tokenizer=False), dict(dtype="Q4_0"),
    dict(dtype="f16"), dict(lerp_layout="split"), dict(n_ffn=0), dict(n_embd=8, head_size=8),
    dict(lora_mix=0), dict(lora_decay=-1), dict(rescale_every=-1), dict(seed=-1), dict(tokenizer="yes"),
])
def test_make_model_refuses_nonsense(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_model(tmp_path / "m.gguf", **kwargs)
    assert list(tmp_path.iterdir()) == []


def unescape_rwkv_token(s: str) -> bytes:
    """llama.cpp's llama_unescape_rwkv_token, transcribed."""
    out, esc, hexn, acc = bytearray(), False, 0, 0
    for c in s.encode("utf-8"):
        if hexn:
            acc = acc * 16 + int(chr(c), 16)
            hexn -= 1
            if not hexn:
                out.append(acc)
                acc = 0
        elif esc:
            esc = False
            if c == ord("x"):
                hexn = 2
            else:
                out += {ord("t"): b"\t", ord("n"): b"\n", ord("r"): b"\r"}.get(c, bytes([c]))
        elif c == ord("\\"):
            esc = True
        else:
            out.append(c)
    return bytes(out)


def test_vocab_is_unique_and_escapes_round_trip():
    toks = vocab_tokens(65536)
    assert len(set(toks)) == 65536 and toks[0] == b"<s>" and toks[1:257] == [bytes([i]) for i in range(256)]
    for b in toks[1:]:
        assert unescape_rwkv_token(escape_token(b)) == b
    assert escape_token(b"'\"") == "\\'\"" and escape_token(b"'") == "'" and escape_token(b"\\") == "\\\\"


# -------------------------------------------------------------------- retyping --

def test_retype_of_the_fixture_reproduces_the_converter_byte_for_byte(tmp_path):
    src = fixture_path(FIXTURE_F32)
    assert retype_gguf(src, tmp_path / "same.gguf", "F32").read_bytes() == src.read_bytes()
    f16 = fixture_path("tiny/gguf/tiny-F16.gguf")
    assert retype_gguf(src, tmp_path / "f16.gguf", "F16").read_bytes() == f16.read_bytes()


@pytest.mark.parametrize("dtype", ["BF16", "F32-ROUNDED-BF16", "F32-ROUNDED-F16"])
def test_retype_changes_only_the_big_matrices(tmp_path, dtype):
    src = make_model(tmp_path / "src.gguf", n_layer=2, n_embd=128, vocab=400, seed=7)
    a, b = GGUFReader(src), GGUFReader(retype_gguf(src, tmp_path / "dst.gguf", dtype))
    assert field_types(a) == field_types(b)
    for k in a.fields:
        if not k.startswith("GGUF.") and k != "general.file_type":
            assert a.fields[k].contents() == b.fields[k].contents(), k
    assert b.fields["general.file_type"].contents() == (32 if dtype == "BF16" else 0)
    for ta, tb in zip(a.tensors, b.tensors):
        assert (ta.name, tuple(ta.shape)) == (tb.name, tuple(tb.shape))
        if not is_big_matrix(ta.name):
            assert (tb.tensor_type.name, raw(tb)) == ("F32", raw(ta)), ta.name
        elif dtype == "BF16":
            assert tb.tensor_type.name == "BF16"
            assert raw(tb) == gguf.quants.quantize(np.asarray(ta.data), GGMLQuantizationType.BF16).tobytes()
        else:
            x = np.asarray(ta.data)
            want = (bf16_to_f32(f32_to_bf16(x)) if dtype.endswith("BF16")
                    else x.astype(np.float16).astype(np.float32))
            assert tb.tensor_type.name == "F32" and raw(tb) == want.tobytes(), ta.name


def test_retype_refuses_bad_input(tmp_path):
    f16 = make_model(tmp_path / "f16.gguf", n_embd=64, vocab=300, dtype="F16")
    with pytest.raises(ValueError, match="expected F32"):
        retype_gguf(f16, tmp_path / "x.gguf", "BF16")
    with pytest.raises(ValueError, match="dtype"):
        retype_gguf(f16, tmp_path / "x.gguf", "Q8_0")
    assert not (tmp_path / "x.gguf").exists()


def test_read_gguf_agrees_with_gguf_py():
    path = fixture_path(FIXTURE_F32)
    ours, theirs = read_gguf(path), GGUFReader(path)
    assert (ours.version, ours.alignment, ours.data_offset) == (3, theirs.alignment, theirs.data_offset)
    assert [(k, v.type.name, *([v.item.name] if v.item is not None else [])) for k, v in ours.metadata.items()] \
        == [(k, *t) for k, t in field_types(theirs)]
    for k, v in ours.metadata.items():
        assert v.value == pytest.approx(theirs.fields[k].contents()) if isinstance(v.value, float) \
            else v.value == theirs.fields[k].contents(), k
    assert [(t.name, ggml_name(t.type), t.ne, t.offset) for t in ours.tensors] == tensor_table(theirs)
    for t, u in zip(ours.tensors, theirs.tensors):
        assert np.array_equal(t.array(), u.data)


def ggml_name(type_id: int) -> str:
    return GGMLQuantizationType(type_id).name
