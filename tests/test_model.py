"""Model forward vs the official `rwkv` package (fp32) on llama.cpp-written GGUFs.

Our distance to the reference must be no worse than llama.cpp's own distance to
the same reference (recorded in the fixture manifest), with identical argmax.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import rwkvfast
from rwkvfast.testing import make_model, retype_gguf

from conftest import fixture_path, manifest_entry, reference_ids


def _f16_gguf(tmp_path_factory) -> str:
    """The converter's F16 fixture, or the same file derived from F32 when absent."""
    try:
        return str(fixture_path("tiny/gguf/tiny-F16.gguf"))
    except pytest.skip.Exception:
        dst = tmp_path_factory.mktemp("f16") / "tiny-F16.gguf"
        return str(retype_gguf(fixture_path("tiny/gguf/tiny-F32.gguf"), dst, "F16"))


@pytest.fixture(scope="module")
def f32_model():
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf")) as m:
        yield m


@pytest.fixture(scope="module")
def f16_path(tmp_path_factory):
    return _f16_gguf(tmp_path_factory)


def _logits(model, ids):
    return model.forward(ids, model.new_state(), all_logits=True)


def _distance(out, ref):
    return float(np.abs(out - ref).max()), float((out.argmax(1) == ref.argmax(1)).mean())


def test_f32_matches_rwkv_package(f32_model):
    ref = np.load(fixture_path("tiny/ref/rwkv_fp32.npy"))
    peer = manifest_entry("F32")["observed"]  # llama.cpp vs this reference
    max_abs, argmax = _distance(_logits(f32_model, reference_ids()), ref)
    assert argmax == 1.0
    assert max_abs <= peer["max_abs"], f"max |ours - rwkv| {max_abs} > llama.cpp's {peer['max_abs']}"


def test_f16_matches_rwkv_on_dequantized_weights(f16_path):
    ref = np.load(fixture_path("tiny/ref/rwkv_dequant_F16.npy"))
    peer = manifest_entry("F16")["llama_vs_dequant"]
    with rwkvfast.Model(f16_path) as m:
        assert m.info["weight_type"] == "F16"
        max_abs, argmax = _distance(_logits(m, reference_ids()), ref)
    assert argmax == 1.0
    assert max_abs <= peer["max_abs"]
    # we compute in f32 on exactly decoded f16 weights, so we are as close as F32 is
    assert max_abs <= manifest_entry("F32")["observed"]["max_abs"]


def test_f16_vs_fp32_reference_no_worse_than_llama_cpp(f16_path):
    ref = np.load(fixture_path("tiny/ref/rwkv_fp32.npy"))
    peer = manifest_entry("F16")["observed"]
    with rwkvfast.Model(f16_path) as m:
        max_abs, argmax = _distance(_logits(m, reference_ids()), ref)
    assert argmax >= peer["argmax_agree"]
    assert max_abs <= peer["max_abs"]


def test_bf16_equals_f32_on_the_same_rounded_weights(tmp_path):
    """BF16 weights are decoded exactly, so a BF16 file must give what an F32 file holding
    the bf16-rounded values gives (that F32 path is the one checked against rwkv above)."""
    src = fixture_path("tiny/gguf/tiny-F32.gguf")
    bf16 = retype_gguf(src, tmp_path / "bf16.gguf", "BF16")
    rounded = retype_gguf(src, tmp_path / "rounded.gguf", "F32-ROUNDED-BF16")
    ids = reference_ids()
    with rwkvfast.Model(bf16) as a, rwkvfast.Model(rounded) as b:
        assert a.info["weight_type"] == "BF16"
        got, want = _logits(a, ids), _logits(b, ids)
    assert np.abs(got - want).max() <= 1e-5
    # and bf16 rounding of the weights alone keeps the model's top choices nearly intact
    ref = np.load(fixture_path("tiny/ref/rwkv_fp32.npy"))
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_stepwise_equals_sequence(f32_model):
    ids = reference_ids()
    seq = _logits(f32_model, ids)
    s = f32_model.new_state()
    one = np.stack([f32_model.forward(t, s) for t in ids])
    np.testing.assert_array_equal(one, seq)
    ref_one = np.load(fixture_path("tiny/ref/rwkv_fp32_one.npy"))
    assert np.abs(one - ref_one).max() <= 2 * manifest_entry("F32")["observed"]["max_abs"]


def test_loading_into_memory_equals_mmap():
    ids = reference_ids()[:16]
    path = fixture_path("tiny/gguf/tiny-F32.gguf")
    with rwkvfast.Model(path, use_mmap=False) as a, rwkvfast.Model(path, use_mmap=True) as b:
        assert (a.info["use_mmap"], b.info["use_mmap"]) == (False, True)
        np.testing.assert_array_equal(_logits(a, ids), _logits(b, ids))
    with rwkvfast.Model(path) as m:  # a 10 MB file always fits: loaded
        assert m.info["use_mmap"] is False


def test_last_logits_equal_last_row(f32_model):
    ids = reference_ids()[:20]
    last = f32_model.forward(ids, f32_model.new_state())
    np.testing.assert_array_equal(last, _logits(f32_model, ids)[-1])


def test_state_save_load_continues_identically(f32_model, tmp_path):
    ids = reference_ids()
    s = f32_model.new_state()
    f32_model.forward(ids[:32], s)
    path = tmp_path / "s.gguf"
    s.save(path)
    loaded = rwkvfast.State.load(path, f32_model)
    np.testing.assert_array_equal(loaded.wkv, s.wkv)
    a = f32_model.forward(ids[32:], s, all_logits=True)
    b = f32_model.forward(ids[32:], loaded, all_logits=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, _logits(f32_model, ids)[32:])


def test_state_copy_reset_and_views(f32_model):
    ids = reference_ids()
    s = f32_model.new_state()
    shape = s.shape
    assert s.wkv.shape == (shape["n_layer"], shape["n_head"], shape["head_size"], shape["head_size"])
    assert s.att_shift.shape == s.ffn_shift.shape == (shape["n_layer"], shape["n_embd"])
    assert not s.wkv.any()
    f32_model.forward(ids[:10], s)
    branch = s.copy()
    x = f32_model.forward(ids[10:20], s)
    y = f32_model.forward(ids[10:20], branch)
    np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError):
        s.wkv[0, 0, 0, 0] = 1.0  # views are read-only
    s.reset()
    assert not s.wkv.any() and not s.att_shift.any() and not s.ffn_shift.any()
    np.testing.assert_array_equal(f32_model.forward(ids[:5], s), f32_model.forward(ids[:5], f32_model.new_state()))


def test_state_views_outlive_state(f32_model):
    s = f32_model.new_state()
    f32_model.forward(reference_ids()[:3], s)
    view = s.wkv
    expected = view.copy()
    del s
    np.testing.assert_array_equal(view, expected)


def test_state_of_another_shape_is_refused(f32_model, tmp_path):
    other = make_model(tmp_path / "other.gguf", n_layer=1, n_embd=128, vocab=300, seed=1)
    with rwkvfast.Model(other) as m:
        s = m.new_state()
        s.save(tmp_path / "other.state")
        with pytest.raises(ValueError, match="does not match"):
            rwkvfast.State.load(tmp_path / "other.state", f32_model)
        with pytest.raises(ValueError, match="state shape"):
            f32_model.forward([1], s)
    with pytest.raises(ValueError, match="not an rwkvfast state"):
        rwkvfast.State.load(fixture_path("tiny/gguf/tiny-F32.gguf"), f32_model)


def test_state_save_never_clobbers_on_failure(f32_model, tmp_path):
    path = tmp_path / "keep.state"
    path.write_bytes(b"precious")
    (tmp_path / "dir.state").mkdir()
    with pytest.raises(OSError):
        f32_model.new_state().save(tmp_path / "dir.state")  # cannot replace a directory
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.state", "keep.state"]


def test_bad_tokens_raise(f32_model):
    s = f32_model.new_state()
    for bad in ([], [1024], [-1], [[1, 2]], [1.5]):
        with pytest.raises(ValueError):
            f32_model.forward(bad, s)
    assert not s.wkv.any()  # nothing ran


def test_two_threads_two_states_one_model(f32_model):
    ids = reference_ids()
    want = _logits(f32_model, ids)
    results = {}

    def run(k):
        results[k] = _logits(f32_model, ids)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        np.testing.assert_array_equal(results[k], want)


def test_closed_model_raises_not_crashes():
    m = rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf"))
    s = m.new_state()
    m.close()
    assert m.closed
    with pytest.raises(ValueError, match="closed"):
        m.forward([1], s)
    with pytest.raises(ValueError, match="closed"):
        m.new_state()
    m.close()  # closing twice is fine


def test_info(f32_model):
    info = f32_model.info
    e = manifest_entry("F32")["shape"]
    assert info["architecture"] == "rwkv6"
    assert (info["n_layer"], info["n_embd"], info["n_vocab"], info["head_size"], info["n_ffn"]) == (
        e["n_layer"], e["n_embd"], e["vocab_size"], e["head_size"], e["ffn"])
    assert (info["lora_mix"], info["lora_decay"], info["rescale_every"]) == (
        e["lora_mix"], e["lora_decay"], e["rescale_every"])
    assert info["weight_type"] == "F32"
    assert info["file_size"] == manifest_entry("F32")["size"]


def test_generate_greedy_follows_argmax(f32_model):
    ids = reference_ids()[:16]
    ref = np.load(fixture_path("tiny/ref/rwkv_fp32.npy"))
    out = f32_model.generate_greedy(ids, 4)
    assert len(out) == 4
    assert out[0] == int(ref[15].argmax())
    s = f32_model.new_state()
    logits = f32_model.forward(ids, s)
    manual = []
    for _ in range(4):
        manual.append(int(logits.argmax()))
        logits = f32_model.forward(manual[-1], s)
    assert out == manual


def test_unsupported_weight_type_refused_clearly(tmp_path):
    from rwkvfast.gguf_writer import write_gguf
    from rwkvfast.testing import read_gguf

    g = read_gguf(fixture_path("tiny/gguf/tiny-F32.gguf"))
    tensors = []
    for t in g.tensors:
        if t.name == "blk.0.time_mix_key.weight":  # I32 is a valid GGUF type but not a weight type
            tensors.append((t.name, "I32", t.ne, t.data))
        else:
            tensors.append((t.name, t.type, t.ne, t.data))
    write_gguf(tmp_path / "i32.gguf", dict(g.metadata), tensors)
    with pytest.raises(ValueError, match="time_mix_key.weight' has type I32"):
        rwkvfast.Model(tmp_path / "i32.gguf")


def test_separate_lerp_layout_equals_fused(tmp_path):
    """Older files store time_mix_lerp_{w,k,v,r,g} separately; split the fused tensor
    (order w, k, v, r, g) into them and the logits must not change."""
    from rwkvfast.gguf_writer import write_gguf
    from rwkvfast.testing import read_gguf

    fused = make_model(tmp_path / "fused.gguf", n_layer=2, n_embd=128, vocab=300, seed=3)
    g = read_gguf(fused)
    tensors = []
    for t in g.tensors:
        if t.name.endswith("time_mix_lerp_fused.weight"):
            prefix = t.name[: -len("fused.weight")]
            parts = t.array().reshape(5, -1)
            tensors += [(f"{prefix}{x}.weight", "F32", (parts.shape[1],), parts[i]) for i, x in enumerate("wkvrg")]
        else:
            tensors.append((t.name, t.type, t.ne, t.data))
    write_gguf(tmp_path / "sep.gguf", dict(g.metadata), tensors)
    ids = list(range(1, 40))
    with rwkvfast.Model(fused) as a, rwkvfast.Model(tmp_path / "sep.gguf") as b:
        np.testing.assert_array_equal(_logits(a, ids), _logits(b, ids))
    # the layout make_model writes for old files loads too
    sep = make_model(tmp_path / "old.gguf", n_layer=1, n_embd=128, vocab=300, lerp_layout="separate")
    with rwkvfast.Model(sep) as m:
        assert np.isfinite(m.forward([1, 2, 3], m.new_state())).all()


def test_rescale_every_halves_the_residual(tmp_path):
    """A file with rescale_every=R and layer weights divided by 2^(l//R) (what llama.cpp's
    converter writes) must equal the undivided model with no rescaling."""
    from rwkvfast.gguf_writer import U32, write_gguf
    from rwkvfast.testing import read_gguf

    plain = make_model(tmp_path / "plain.gguf", n_layer=5, n_embd=64, vocab=300, seed=4, rescale_every=0)
    g = read_gguf(plain)
    meta = dict(g.metadata)
    meta["rwkv6.rescale_every_n_layers"] = U32(2)
    tensors = []
    for t in g.tensors:
        data = t.array()
        if t.name.endswith(("time_mix_output.weight", "channel_mix_value.weight")):
            layer = int(t.name.split(".")[1])
            data = data / np.float32(2 ** (layer // 2))
        tensors.append((t.name, t.type, t.ne, data))
    write_gguf(tmp_path / "scaled.gguf", meta, tensors)
    ids = list(range(1, 30))
    with rwkvfast.Model(plain) as a, rwkvfast.Model(tmp_path / "scaled.gguf") as b:
        assert b.info["rescale_every"] == 2
        x, y = _logits(a, ids), _logits(b, ids)
    assert np.abs(x - y).max() <= 1e-4 * np.abs(x).max()


def test_bare_core_objects_raise_not_crash():
    from rwkvfast import _core

    with pytest.raises(ValueError, match="not initialised"):
        _core._State().shape
    with pytest.raises(ValueError, match="not initialised"):
        _core.Tokenizer().encode_bytes(b"abc")
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf")) as m:
        with pytest.raises(ValueError, match="not initialised"):
            m._m.forward(np.array([1], np.int32), _core._State())


def test_file_type_names_the_llama_cpp_ftype(f32_model, f16_path):
    assert f32_model.info["file_type"] == "F32"
    with rwkvfast.Model(f16_path) as m:
        assert m.info["file_type"] == "F16"
    meta = rwkvfast.gguf_metadata(fixture_path("tiny/gguf/tiny-Q4_K_M.gguf"))["metadata"]
    assert rwkvfast.model.FILE_TYPES[meta["general.file_type"]] == "Q4_K_M"


def test_one_state_in_two_threads_is_refused_not_corrupted(f32_model):
    """A State belongs to one sequence: a second forward on it while one runs raises."""
    import threading

    s = f32_model.new_state()
    ids = reference_ids() * 20  # long enough to still be running when the second call comes
    errors = []
    started = threading.Event()

    def long_run():
        started.set()
        for _ in range(100):  # the main thread's short calls may hold the state for a moment
            try:
                f32_model.forward(ids, s)
                return
            except RuntimeError:
                continue

    t = threading.Thread(target=long_run)
    t.start()
    started.wait()
    for _ in range(2000):  # bounded: stop as soon as the first call is seen running
        try:
            f32_model.forward([1], s)
        except RuntimeError as e:
            errors.append(str(e))
            break
        if not t.is_alive():
            break
    t.join()
    if not errors:
        pytest.skip("the first forward finished before a second call overlapped it")
    assert "another thread" in errors[0]
