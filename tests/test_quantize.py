"""rwkvfast.quantize / rwkvfast-quantize vs llama.cpp's llama-quantize.

The fixtures' quantized GGUFs were written by llama-quantize from tiny-F32.gguf: our output must
choose the same type for every tensor and (with the C block quantizers) hold the same bytes. Where
llama-cpp-python is installed (the fixtures' llama.cpp commit), it is a live oracle for the types
and shapes the fixtures do not cover.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rwkvfast
from rwkvfast import _core
from rwkvfast.cli.quantize import main
from rwkvfast.gguf_writer import GGML_TYPE_BY_ID, U32, write_gguf
from rwkvfast.quantize import FTYPES, parse_ftype, quantize, tensor_target_type
from rwkvfast.testing import make_model, read_gguf, retype_gguf

from conftest import fixture_path

# the module itself: once rwkvfast/__init__.py exports the function, `rwkvfast.quantize` is the function
rq = importlib.import_module("rwkvfast.quantize")

HAS_CORE_QUANT = hasattr(_core, "quantize") and hasattr(_core, "dequantize")
need_core = pytest.mark.skipif(not HAS_CORE_QUANT, reason="rwkvfast._core.quantize/dequantize (C block "
                                                          "quantizers) are not built into this _core yet")
FIXTURE_TYPES = ["F32", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_1", "Q5_0", "Q4_K_M", "Q4_1", "Q4_0",
                 "Q3_K_M", "Q2_K"]  # shared/fixtures/tiny/gguf (llama-quantize from F32; F16 from the converter)
QUANTIZED = [t for t in FIXTURE_TYPES if t not in ("F32", "F16")]


def _types(path) -> dict[str, str]:
    return {t.name: GGML_TYPE_BY_ID[t.type].name for t in read_gguf(path).tensors}


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _no_temp_files(d: Path) -> bool:
    return not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def _same_tensors(a, b) -> list[str]:
    """Names of tensors whose type or bytes differ between GGUFs a and b (matched by name)."""
    ga, gb = read_gguf(a), read_gguf(b)
    assert sorted(t.name for t in ga.tensors) == sorted(t.name for t in gb.tensors)
    return [t.name for t in ga.tensors
            if t.type != gb.tensor(t.name).type or not np.array_equal(t.data, gb.tensor(t.name).data)]


@pytest.fixture(scope="module")
def tiny_f32():
    return fixture_path("tiny/gguf/tiny-F32.gguf")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A synthetic model with the tiny fixture's layout (no shared fixtures needed)."""
    return make_model(tmp_path_factory.mktemp("small") / "small-F32.gguf", n_layer=2, n_embd=256, vocab=300)


# ------------------------------------------------------------------------ types --

def test_type_names_and_llama_ftype_ids():
    ids = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
           "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16,
           "Q5_K_M": 17, "Q6_K": 18, "BF16": 32}  # llama.h enum llama_ftype
    assert {f.name: f.id for f in FTYPES.values()} == ids
    for name, i in ids.items():
        assert parse_ftype(name.lower()).name == name
        assert parse_ftype(i).name == name and parse_ftype(str(i)).name == name
    assert parse_ftype("q4_k").name == "Q4_K_M" and parse_ftype(" Q5_K ").name == "Q5_K_M"
    for bad in ("Q4_2", "IQ2_XXS", "Q2_K_S", "99", "", "4.5", None, True):
        with pytest.raises(ValueError, match="unknown quantization type"):
            parse_ftype(bad)


@pytest.mark.parametrize("ftype", FIXTURE_TYPES)
def test_tensor_types_match_llama_quantize_fixture(tiny_f32, ftype, tmp_path):
    want = json.loads(fixture_path("tiny/gguf/tensor_types.json").read_text())[ftype]
    assert quantize(tiny_f32, tmp_path / "plan.gguf", ftype, dry_run=True).tensor_types == want
    assert not (tmp_path / "plan.gguf").exists()
    if ftype in QUANTIZED and not HAS_CORE_QUANT:
        pytest.skip("writing quantized types needs rwkvfast._core.quantize")
    out = tmp_path / f"ours-{ftype}.gguf"
    r = quantize(tiny_f32, out, ftype, n_threads=2)
    assert r.output == out and _types(out) == want and r.tensor_types == want
    ours, src = read_gguf(out), read_gguf(tiny_f32)
    assert [t.name for t in ours.tensors] == [t.name for t in src.tensors]  # input order kept
    # metadata: the input's, in order, with quantization_version and file_type moved to the end
    keys = [k for k in src.metadata if k not in ("general.quantization_version", "general.file_type")]
    assert list(ours.metadata) == keys + ["general.quantization_version", "general.file_type"]
    assert all(ours.metadata[k] == src.metadata[k] for k in keys)
    assert ours.metadata["general.file_type"] == U32(FTYPES[ftype].id)
    assert ours.metadata["general.quantization_version"] == U32(2)
    if ftype in QUANTIZED:  # llama-quantize's own output: metadata identical, keys and values, in order
        ref = read_gguf(fixture_path(f"tiny/gguf/tiny-{ftype}.gguf"))
        assert list(ours.metadata) == list(ref.metadata)
        assert all(ours.metadata[k] == ref.metadata[k] for k in ref.metadata)
        assert ours.alignment == ref.alignment == 32


@need_core
@pytest.mark.parametrize("ftype", QUANTIZED)
def test_bytes_equal_llama_quantize_fixture(tiny_f32, ftype, tmp_path):
    """Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K types: every tensor byte for byte."""
    out = quantize(tiny_f32, tmp_path / "q.gguf", ftype, n_threads=3).output
    assert _same_tensors(out, fixture_path(f"tiny/gguf/tiny-{ftype}.gguf")) == []


def test_rules_for_types_without_fixture(tiny_f32):
    """_S/_L mixes touch only attn_v/attn_output/ffn_down names: for RWKV-6 they equal the base type
    plus a Q6_K output (checked against llama-quantize in test_llama_cpp_oracle)."""
    for name, base, fb in (("Q3_K_S", "Q3_K", "Q4_0"), ("Q3_K_L", "Q3_K", "Q4_0"),
                           ("Q4_K_S", "Q4_K", "Q5_0"), ("Q5_K_S", "Q5_K", "Q5_1")):
        types = quantize(tiny_f32, "unused.gguf", name, dry_run=True).tensor_types
        assert types["output.weight"] == "Q6_K" and types["token_embd.weight"] == base
        assert types["blk.1.channel_mix_value.weight"] == fb  # 896 columns: not a multiple of 256
        assert types["blk.0.time_mix_key.weight"] == base and types["blk.0.channel_mix_key.weight"] == base
        for n in ("time_mix_w1", "time_mix_w2", "time_mix_decay_w1", "time_mix_decay_w2", "time_mix_first",
                  "time_mix_lerp_fused", "time_mix_decay", "attn_norm", "time_mix_ln"):
            assert types[f"blk.0.{n}.weight"] == "F32"


def test_fallback_and_unusual_shapes():
    assert tensor_target_type("blk.0.channel_mix_value.weight", (896, 256), "Q6_K") == ("Q8_0", "Q6_K")
    assert tensor_target_type("blk.0.channel_mix_value.weight", (896, 256), "Q2_K") == ("Q4_0", "Q2_K")
    assert tensor_target_type("output.weight", (96, 300), "Q4_K_M") == ("Q8_0", None)
    assert tensor_target_type("output.weight", (80, 300), "Q4_0") == ("F16", "Q8_0")
    assert tensor_target_type("blk.0.time_mix_key.weight", (80, 80), "Q5_K_M") == ("F16", "Q5_K")
    assert tensor_target_type("blk.0.time_mix_key.weight", (80, 80), "Q4_1") == ("F16", "Q4_1")
    assert tensor_target_type("token_embd.weight", (256, 300), "Q4_0", tied_embeddings=True) == ("Q6_K", None)
    assert tensor_target_type("blk.0.time_mix_lerp_x.weight", (256, 1, 1, 1), "Q8_0") == ("", None)
    assert tensor_target_type("blk.0.time_mix_key.weight", (256, 256), "BF16") == ("BF16", None)


# ------------------------------------------------------------- llama.cpp as oracle --

def _llama_quantize(llama_cpp, src, dst, ftype_id, requant=False) -> int:
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.nthread, p.allow_requantize = ftype_id, 2, requant
    return llama_cpp.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(p))


@pytest.fixture(scope="module")
def llama_cpp():
    lc = pytest.importorskip("llama_cpp")

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def quiet(level, text, user_data):
        pass
    lc.llama_log_set(quiet, None)
    yield lc
    # back to llama-cpp-python's own logger (llama.cpp's default one if that moved)
    lc.llama_log_set(getattr(getattr(lc, "_logger", None), "llama_log_callback", None) or
                     ctypes.cast(None, type(quiet)), None)


@need_core
@pytest.mark.parametrize("shape", [dict(n_embd=96, head_size=32), dict(n_embd=80, head_size=16, n_layer=1),
                                   dict(n_embd=64, head_size=32, dtype="BF16", lerp_layout="separate")])
def test_llama_cpp_oracle(llama_cpp, shape, tmp_path):
    """Every type, on shapes the fixture lacks (rows not a multiple of 256, nor even of 32), from
    F32/BF16 inputs: the file llama-quantize writes, metadata and bytes (tensor order aside)."""
    src = make_model(tmp_path / "src.gguf", vocab=300, **shape)
    for f in FTYPES.values():
        assert _llama_quantize(llama_cpp, src, tmp_path / "ref.gguf", f.id) == 0
        ours, ref = read_gguf(quantize(src, tmp_path / "ours.gguf", f, n_threads=2).output), read_gguf(tmp_path / "ref.gguf")
        assert list(ours.metadata) == list(ref.metadata), f.name
        assert all(ours.metadata[k] == ref.metadata[k] for k in ref.metadata), f.name
        assert _same_tensors(tmp_path / "ours.gguf", tmp_path / "ref.gguf") == [], f.name


@need_core
def test_requantize_and_tied_embeddings_match_llama_cpp(llama_cpp, tiny_f32, tmp_path):
    for src_type, dst in (("Q8_0", "Q4_0"), ("Q4_K_M", "Q5_K_M"), ("Q2_K", "F16")):
        src = fixture_path(f"tiny/gguf/tiny-{src_type}.gguf")
        assert _llama_quantize(llama_cpp, src, tmp_path / "ref.gguf", FTYPES[dst].id, requant=True) == 0
        quantize(src, tmp_path / "ours.gguf", dst, allow_requantize=True)
        assert _same_tensors(tmp_path / "ours.gguf", tmp_path / "ref.gguf") == [], (src_type, dst)
    g = read_gguf(tiny_f32)  # no output.weight: token_embd is also the output (Q6_K)
    write_gguf(tmp_path / "tied.gguf", list(g.metadata.items()),
               [(t.name, GGML_TYPE_BY_ID[t.type].name, t.ne, t.data) for t in g.tensors if t.name != "output.weight"])
    assert _llama_quantize(llama_cpp, tmp_path / "tied.gguf", tmp_path / "ref.gguf", FTYPES["Q4_0"].id) == 0
    r = quantize(tmp_path / "tied.gguf", tmp_path / "ours.gguf", "Q4_0")
    assert r.tensor_types["token_embd.weight"] == "Q6_K"
    assert _same_tensors(tmp_path / "ours.gguf", tmp_path / "ref.gguf") == []


_LLAMA_LOAD = """
import json, sys, numpy as np, llama_cpp
path, ids, ref = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
llm = llama_cpp.Llama(path, n_threads=2, logits_all=True, verbose=False)
if ref:
    llm.eval(ids)
    print(float(np.abs(np.asarray(llm.scores[:len(ids)]) - np.load(ref)[:len(ids)]).max()))
llm.close()
"""


def _llama_cpp_load(path, ids=(), ref="") -> subprocess.CompletedProcess:
    """Load (and, given `ref` logits, run) a GGUF in llama.cpp in a child process, so that a crash
    of llama.cpp itself (its quantized kernels segfault on some hosts, even on the fixture files)
    cannot take the test run down."""
    return subprocess.run([sys.executable, "-c", _LLAMA_LOAD, str(path), json.dumps(list(ids)), str(ref)],
                          capture_output=True, text=True, timeout=120)


def test_output_loads_in_llama_cpp(llama_cpp, tiny_f32, tmp_path):
    ids = json.loads(fixture_path("tiny/tokens.json").read_text())["ids"][:8]
    f16 = quantize(tiny_f32, tmp_path / "f16.gguf", "F16").output
    r = _llama_cpp_load(f16, ids, fixture_path("tiny/ref/llama_F16.npy"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout.split()[-1]) < 0.05  # the fixture's own F16 logits, up to batch/thread effects
    if HAS_CORE_QUANT:  # loading checks every tensor's type and shape; evaluation is not ours to test
        q = quantize(tiny_f32, tmp_path / "q.gguf", "Q4_K_M").output
        r = _llama_cpp_load(q)
        assert r.returncode == 0, r.stderr[-2000:]


# ------------------------------------------------------------ float targets, threads --

def test_float_targets_and_rwkvfast_loads_them(small, tmp_path):
    f16 = quantize(small, tmp_path / "f16.gguf", "F16", n_threads=2).output
    bf16 = quantize(small, tmp_path / "bf16.gguf", "bf16").output
    # the converter's F16 (numpy round-to-nearest-even) and retype_gguf's BF16 give the same bytes
    assert _same_tensors(f16, retype_gguf(small, tmp_path / "ref-f16.gguf", "F16")) == []
    assert _same_tensors(bf16, retype_gguf(small, tmp_path / "ref-bf16.gguf", "BF16")) == []
    back = quantize(f16, tmp_path / "f32.gguf", 0).output  # F16 -> F32: exact widening
    assert set(_types(back).values()) == {"F32"}
    src, g16 = read_gguf(small), read_gguf(f16)
    for t in read_gguf(back).tensors:
        np.testing.assert_array_equal(t.array(), g16.tensor(t.name).array())
        np.testing.assert_allclose(t.array(), src.tensor(t.name).array(), rtol=1e-3, atol=1e-4)
    ids = list(range(10, 40))
    logits = []
    for p in (f16, tmp_path / "ref-f16.gguf", bf16, tmp_path / "ref-bf16.gguf"):
        with rwkvfast.Model(p, n_threads=1) as m:
            logits.append(m.forward(ids, m.new_state()))
    np.testing.assert_array_equal(logits[0], logits[1])
    np.testing.assert_array_equal(logits[2], logits[3])


def test_f16_equals_converter_fixture(tiny_f32, tmp_path):
    out = quantize(tiny_f32, tmp_path / "f16.gguf", "F16").output
    assert _same_tensors(out, fixture_path("tiny/gguf/tiny-F16.gguf")) == []


@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q8_0", "BF16"])
def test_threads_and_chunking_do_not_change_bytes(small, ftype, tmp_path, monkeypatch):
    if FTYPES[ftype].is_quantized and not HAS_CORE_QUANT:
        pytest.skip("needs rwkvfast._core.quantize")
    a = quantize(small, tmp_path / "a.gguf", ftype, n_threads=1).output
    monkeypatch.setattr(rq, "_CHUNK_ELEMENTS", 3 * 256)  # many small chunks, several in flight
    b = quantize(small, tmp_path / "b.gguf", ftype, n_threads=4).output
    assert a.read_bytes() == b.read_bytes()


def test_alignment_kept(small, tmp_path):
    g = read_gguf(small)
    src = write_gguf(tmp_path / "a64.gguf", list(g.metadata.items()),
                     [(t.name, GGML_TYPE_BY_ID[t.type].name, t.ne, t.data) for t in g.tensors], alignment=64)
    out = read_gguf(quantize(src, tmp_path / "o.gguf", "F16").output)
    assert out.alignment == 64 and out.metadata["general.alignment"].value == 64
    assert all(t.offset % 64 == 0 for t in out.tensors) and out.data_offset % 64 == 0


def test_progress_and_result(small, tmp_path):
    seen = []
    r = quantize(small, tmp_path / "o.gguf", "F16", progress=seen.append)
    n = len(read_gguf(small).tensors)
    assert [p.index for p in seen] == list(range(1, n + 1)) and all(p.count == n for p in seen)
    assert seen == r.tensors
    line = str(next(p for p in seen if p.name == "blk.0.time_mix_key.weight"))
    assert line.startswith(f"[   ") and "blk.0.time_mix_key.weight" in line and "[   256,    256,      1,      1]" in line
    assert "type =    f32, converting to f16 .. size =     0.25 MiB ->     0.12 MiB" in line
    assert str(next(p for p in seen if p.name == "blk.0.attn_norm.bias")).endswith("type =    f32, size =    0.001 MiB")
    assert r.size_before == sum(p.old_nbytes for p in seen) > r.size_after == sum(p.new_nbytes for p in seen)
    assert "model size" in r.summary() and "quant size" in r.summary()
    assert r.size_after == sum(t.nbytes for t in read_gguf(r.output).tensors)


# --------------------------------------------------------------------- bad input --

def test_requantize_refused_without_flag(small, tmp_path):
    q = tmp_path / "q8.gguf"
    if HAS_CORE_QUANT:
        quantize(small, q, "Q8_0")
    else:  # a quantized input without the C quantizers: gguf-py writes the same Q8_0 blocks
        gq = pytest.importorskip("gguf.quants")
        from gguf import GGMLQuantizationType
        g = read_gguf(small)
        write_gguf(q, list(g.metadata.items()),
                   [(t.name, "Q8_0", t.ne, gq.quantize(t.array(), GGMLQuantizationType.Q8_0))
                    if tensor_target_type(t.name, t.ne, "Q8_0")[0] else (t.name, "F32", t.ne, t.data)
                    for t in g.tensors])
    before = _sha(q)
    with pytest.raises(ValueError, match="already quantized.*allow-requantize"):
        quantize(q, tmp_path / "o.gguf", "Q4_0")
    assert main([str(q), str(tmp_path / "o.gguf"), "Q4_0"]) == 1
    assert _sha(q) == before and not (tmp_path / "o.gguf").exists() and _no_temp_files(tmp_path)
    if HAS_CORE_QUANT:
        r = quantize(q, tmp_path / "o.gguf", "Q4_0", allow_requantize=True)
        assert r.tensor_types["token_embd.weight"] == "Q4_0"
        assert main([str(q), str(tmp_path / "o2.gguf"), "Q4_0", "--allow-requantize"]) == 0


def test_bad_inputs_are_clear_errors(small, tmp_path, capsys):
    before = _sha(small)
    out = tmp_path / "out.gguf"
    cases = [
        ((small, out, "Q4_3"), ValueError, "unknown quantization type"),
        ((tmp_path / "missing.gguf", out, "Q8_0"), OSError, "missing.gguf"),
        ((small, tmp_path / "no-such-dir" / "o.gguf", "F16"), OSError, "no-such-dir"),
        ((small, small, "Q8_0"), ValueError, "is the input file"),
        ((small, tmp_path, "F16"), OSError, "directory"),
    ]
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + b"\xff" * 64)
    cases.append(((garbage, out, "F16"), ValueError, "garbage.gguf"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases.append(((small, afile / "o.gguf", "F16"), OSError, "afile"))
    link = tmp_path / "link.gguf"
    link.symlink_to(small)
    cases.append(((small, link, "F16"), ValueError, "is the input file"))
    cases.append(((link, small, "F16"), ValueError, "is the input file"))
    hard = tmp_path / "hard.gguf"
    os.link(small, hard)
    cases.append(((small, hard, "F16"), ValueError, "is the input file"))
    cases.append(((small, Path(small).parent / ".." / Path(small).parent.name / Path(small).name, "F16"),
                  ValueError, "is the input file"))
    g = read_gguf(make_model(tmp_path / "llama.gguf", n_layer=1, n_embd=64, vocab=300))
    write_gguf(tmp_path / "llama.gguf", [(k, "llama" if k == "general.architecture" else v) for k, v in g.metadata.items()],
               [(t.name, GGML_TYPE_BY_ID[t.type].name, t.ne, t.data) for t in g.tensors])
    cases.append(((tmp_path / "llama.gguf", out, "F16"), ValueError, "only RWKV-6"))
    for args, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            quantize(*args)
        capsys.readouterr()
        assert main([str(a) for a in args]) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    with pytest.raises(ValueError, match="n_threads"):
        quantize(small, out, "F16", n_threads=0)
    assert main([str(small), str(out), "F16", "zero"]) == 1
    assert _sha(small) == before and not out.exists() and _no_temp_files(tmp_path)
    assert _no_temp_files(Path(small).parent)


def test_unwritable_output_directory(small, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        try:
            (ro / "probe").write_bytes(b"")
        except PermissionError:
            pass
        else:
            pytest.skip("this user may write into a read-only directory (root with CAP_DAC_OVERRIDE)")
        with pytest.raises(PermissionError, match="not writable"):
            quantize(small, ro / "o.gguf", "F16")
        assert main([str(small), str(ro / "o.gguf"), "F16"]) == 1
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_interrupted_run_leaves_output_and_input_alone(small, tmp_path, monkeypatch, exc):
    out = tmp_path / "out.gguf"
    out.write_bytes(b"previous contents")
    before = _sha(small)
    calls = []
    real = rq._from_f32

    def failing(dst, x):
        calls.append(dst)
        if len(calls) == 5:
            raise exc
        return real(dst, x)
    monkeypatch.setattr(rq, "_from_f32", failing)
    with pytest.raises(type(exc)):
        quantize(small, out, "F16", n_threads=2)
    assert out.read_bytes() == b"previous contents" and _sha(small) == before and _no_temp_files(tmp_path)


# --------------------------------------------------------------------------- CLI --

def test_cli_help_lists_every_type(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for f in FTYPES.values():
        assert f"{f.id:2d}  or  {f.name:<7} : {f.bpw:5.2f} bpw" in out, f.name
    assert "--allow-requantize" in out and "NTHREADS" in out


def test_cli_quantizes_and_reports(small, tmp_path, capsys):
    out = tmp_path / "o.gguf"
    ftype = "q4_k_m" if HAS_CORE_QUANT else "bf16"
    assert main([str(small), str(out), ftype, "2"]) == 0
    err = capsys.readouterr().err
    n = len(read_gguf(small).tensors)
    assert f"[   1/{n:4d}]" in err and f"[{n:4d}/{n:4d}]" in err
    assert "model size  =" in err and "quant size  =" in err and "wrote" in err
    if HAS_CORE_QUANT:
        assert "converting to q6_K" in err and "converting to q4_K" in err and "fallback" in err
    assert read_gguf(out).metadata["general.file_type"].value == parse_ftype(ftype).id
    assert main([str(small), str(tmp_path / "dry.gguf"), "15", "--dry-run", "-t", "1"]) == 0
    assert not (tmp_path / "dry.gguf").exists() and "planned" in capsys.readouterr().err


RWKV7_QUANTIZED = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_1", "Q4_K_M", "Q4_0", "Q2_K"]  # shared/fixtures/rwkv7


@need_core
@pytest.mark.parametrize("ftype", RWKV7_QUANTIZED)
def test_rwkv7_tensor_for_tensor_as_llama_quantize(ftype, tmp_path):
    """RWKV-7 from the converter's F32: llama-quantize's per-tensor rules (the six big matrices
    per layer, token_embd and output quantized, output Q6_K below Q8_0; every LoRA, a/v/g
    included, left F32) and its bytes, tensor for tensor, and its metadata."""
    src = fixture_path("rwkv7/tiny7/gguf/tiny7-F32.gguf")
    ref = fixture_path(f"rwkv7/tiny7/gguf/tiny7-{ftype}.gguf")
    want = json.loads(fixture_path("rwkv7/tiny7/gguf/tensor_types.json").read_text())[ftype]
    r = quantize(src, tmp_path / "q.gguf", ftype, n_threads=2)
    assert r.tensor_types == want == _types(r.output)
    assert _same_tensors(r.output, ref) == []
    ours, theirs = read_gguf(r.output), read_gguf(ref)
    assert list(ours.metadata) == list(theirs.metadata)
    assert all(ours.metadata[k] == theirs.metadata[k] for k in theirs.metadata)


def test_rwkv7_f16_keeps_the_loras_f32_as_llama_quantize_does(tmp_path):
    """llama-quantize F16 converts only what may be quantized: the a/v/g LoRAs stay F32 (the
    converter's F16 file, by its own rule, has them in F16; both load and agree)."""
    src = fixture_path("rwkv7/tiny7/gguf/tiny7-F32.gguf")
    types = quantize(src, tmp_path / "f16.gguf", "F16").tensor_types
    assert types["blk.1.time_mix_a1.weight"] == types["blk.1.time_mix_w1.weight"] == "F32"
    assert types["blk.1.time_mix_key.weight"] == types["output.weight"] == "F16"
