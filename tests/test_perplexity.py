"""rwkvfast.perplexity and rwkvfast-perplexity: llama-perplexity's chunking and numbers, checked
against perplexities and KL divergences computed from the official rwkv package's logits."""
from __future__ import annotations

import math

import numpy as np
import pytest

import rwkvfast
from rwkvfast import perplexity as pp
from rwkvfast.cli.perplexity import main

from conftest import fixture_path, manifest_entry, reference_ids


def _nll(logits: np.ndarray, ids: list[int], first: int) -> np.ndarray:
    """-log p(next token), by the book, for positions first..len-2 of one chunk."""
    x = logits[first:-1].astype(np.float64)
    lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
    return lse - x[np.arange(len(x)), ids[first + 1:]]


def test_the_perplexity_of_the_official_logits():
    """One chunk of the 64 reference tokens: scored positions 32..62, as llama-perplexity
    does. The official rwkv package's logits give the reference perplexity; ours may differ
    from it only as far as the logits do (a log-probability moves at most twice as far as
    the largest logit change)."""
    ids = reference_ids()
    official = np.load(fixture_path("tiny/ref/rwkv_fp32.npy"))
    want = math.exp(_nll(official, ids, 32).mean())
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf")) as m:
        got = pp.evaluate(m, ids, ctx=64)
        ours = m.forward(ids, m.new_state(), all_logits=True)
    assert (got.n_chunks, got.n_scored, got.ctx) == (1, 31, 64)
    bound = 2 * float(np.abs(ours - official).max())
    assert bound <= 2 * 1e-4  # the logits themselves (tests/test_model.py holds them tighter)
    assert abs(math.log(got.ppl) - math.log(want)) <= bound + 1e-12
    assert got.chunk_ppl == [got.ppl]


def test_chunks_start_from_a_fresh_state_and_score_their_second_half():
    ids = (reference_ids() * 3)[:150]
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf")) as m:
        r = pp.evaluate(m, ids, ctx=48)  # 3 chunks; the last 6 tokens are left out
        nll = np.concatenate([_nll(m.forward(ids[c:c + 48], m.new_state(), all_logits=True), ids[c:c + 48], 24)
                              for c in (0, 48, 96)])
        assert pp.evaluate(m, ids, ctx=48, n_chunks=2).n_chunks == 2
    assert (r.n_chunks, r.n_scored) == (3, 3 * 23)
    assert r.ppl == pytest.approx(math.exp(nll.mean()), rel=1e-12)
    assert r.ppl_err == pytest.approx(math.exp(nll.mean()) * nll.std(ddof=1) / math.sqrt(len(nll)), rel=1e-9)
    assert r.chunk_ppl[0] == pytest.approx(math.exp(nll[:23].mean()), rel=1e-12) and len(r.chunk_ppl) == 3


def test_a_text_shorter_than_one_chunk_is_a_value_error():
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf")) as m:
        with pytest.raises(ValueError, match="fewer than one chunk of 512"):
            pp.evaluate(m, reference_ids(), ctx=512)


def test_kl_divergence_of_a_quantized_file_against_its_base(tmp_path):
    """The base run (F32) saves its log-probabilities; the Q4_K_M run's KLD must be what the two
    runs' logits give (the saved float16 log-probabilities are within 0.004 of the exact
    ones where the probability is), and so, within the F32 run's distance to it, what the
    official model's logits give."""
    ids = reference_ids()
    base = tmp_path / "base.kld"
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf")) as m:
        r0 = pp.evaluate(m, ids, ctx=64, save_base=base)
        self_kl = pp.evaluate(m, ids, ctx=64, kl_base=base).kl
        f32 = m.forward(ids, m.new_state(), all_logits=True)
    assert self_kl.mean < 1e-4 and self_kl.same_top == 1.0 and self_kl.ppl_ratio == pytest.approx(1, abs=1e-3)
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-Q4_K_M.gguf")) as m:
        r = pp.evaluate(m, ids, ctx=64, kl_base=base)
        q = m.forward(ids, m.new_state(), all_logits=True)
    lb, lq = pp.log_softmax(f32[32:63]), pp.log_softmax(q[32:63])
    want = (np.exp(lb) * (lb - lq)).sum(1)
    assert abs(r.kl.mean - want.mean()) <= 0.004 and r.kl.maximum == pytest.approx(want.max(), abs=0.004)
    assert r.kl.same_top == pytest.approx(float((lb.argmax(1) == lq.argmax(1)).mean()))
    assert r.kl.base_ppl == pytest.approx(r0.ppl, rel=1e-3) and r.kl.ppl_ratio == pytest.approx(r.ppl / r0.ppl, rel=1e-3)
    official = np.load(fixture_path("tiny/ref/rwkv_fp32.npy"))
    lo = pp.log_softmax(official[32:63])
    gap = 2 * float(np.abs(f32 - official).max())
    assert abs(r.kl.mean - (np.exp(lo) * (lo - lq)).sum(1).mean()) <= 0.004 + 2 * gap
    assert 0.01 < r.kl.mean < 1  # a 4-bit file is measurably, not wildly, off


def test_a_base_file_for_other_text_or_a_damaged_one_is_refused(tmp_path):
    ids = reference_ids()
    base = tmp_path / "base.kld"
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf")) as m:
        pp.evaluate(m, ids, ctx=64, save_base=base)
        with pytest.raises(ValueError, match="another text"):
            pp.evaluate(m, ids[::-1], ctx=64, kl_base=base)
        raw = base.read_bytes()
        for name, data, why in [("magic", b"XXXXXXXX" + raw[8:], "not a saved base run"),
                                ("short", raw[:-10], "do not fill the file"),
                                ("header", raw[:8] + (10**12).to_bytes(8, "little") + raw[16:], "exceeds the file"),
                                ("json", raw[:16] + b"{" * 10 + raw[26:], "bad header")]:
            bad = tmp_path / f"{name}.kld"
            bad.write_bytes(data)
            with pytest.raises(ValueError, match=why):
                pp.evaluate(m, ids, ctx=64, kl_base=bad)


def test_an_interrupted_base_run_leaves_the_old_file_as_it_was(tmp_path):
    base = tmp_path / "base.kld"
    base.write_bytes(b"the user's file")
    ids = (reference_ids() * 2)[:128]

    def stop(done, total, ppl):
        raise KeyboardInterrupt

    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf")) as m:
        with pytest.raises(KeyboardInterrupt):
            pp.evaluate(m, ids, ctx=64, save_base=base, on_chunk=stop)
    assert base.read_bytes() == b"the user's file"
    assert [p.name for p in tmp_path.iterdir()] == ["base.kld"]


def test_the_command_prints_llama_perplexity_s_lines(tmp_path, capsys):
    text = tmp_path / "t.txt"
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf")) as m:
        text.write_text(m.tokenizer.decode((reference_ids() * 4)[:256]))
        n = len(m.tokenizer.encode(text.read_text()))
    model = str(fixture_path("tiny/gguf/tiny-F32.gguf"))
    assert main(["-m", model, "-f", str(text), "-c", "64", "-t", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    chunks = n // 64
    assert out[0].startswith("[1]") and out[0].count(",") == chunks and f"[{chunks}]" in out[0]
    assert out[1].startswith("Final estimate: PPL = ") and " +/- " in out[1]
    base = tmp_path / "b.kld"
    assert main(["-m", model, "-f", str(text), "-c", "64", "--kl-divergence-base", str(base)]) == 0
    assert base.exists()
    capsys.readouterr()
    q = str(fixture_path("tiny/gguf/tiny-Q8_0.gguf"))
    assert main(["-m", q, "-f", str(text), "-c", "64", "--kl-divergence-base", str(base), "--kl-divergence"]) == 0
    out = capsys.readouterr().out
    for line in ("Mean PPL(Q)", "Mean PPL(base)", "Mean    KLD:", "Maximum KLD:", "99.9%   KLD:", "Median  KLD:",
                 "Same top p:"):
        assert line in out
    assert main(["-m", model, "-f", str(text), "-c", "4096"]) == 1
    assert "fewer than one chunk" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["-m", model, "-f", str(text), "--kl-divergence"])
    assert e.value.code == 2


def test_rwkv7_perplexity_and_kl_divergence_against_the_official_package(tmp_path):
    """An RWKV-7 file (tiny7): its perplexity is what the official package's logits on the
    file's own weights give, within twice our distance to them; a Q4_K_M run against the F16
    base gives the KLD that the package's logits of the two files give."""
    ids = reference_ids("rwkv7/tiny7")
    official = {t: np.load(fixture_path(f"rwkv7/tiny7/ref/rwkv_dequant_{t}.npy")) for t in ("F16", "Q4_K_M")}
    base = tmp_path / "base.kld"
    with rwkvfast.Model(fixture_path("rwkv7/tiny7/gguf/tiny7-F16.gguf")) as m:
        r0 = pp.evaluate(m, ids, ctx=64, save_base=base)
        f16 = m.forward(ids, m.new_state(), all_logits=True)
    gap = 2 * float(np.abs(f16 - official["F16"]).max())
    assert gap <= 1e-4
    assert abs(math.log(r0.ppl) - _nll(official["F16"], ids, 32).mean()) <= gap + 1e-12
    with rwkvfast.Model(fixture_path("rwkv7/tiny7/gguf/tiny7-Q4_K_M.gguf")) as m:
        r = pp.evaluate(m, ids, ctx=64, kl_base=base)
        q = m.forward(ids, m.new_state(), all_logits=True)
    gap_q = 2 * float(np.abs(q - official["Q4_K_M"]).max())
    lo, lq = pp.log_softmax(official["F16"][32:63]), pp.log_softmax(official["Q4_K_M"][32:63])
    want = (np.exp(lo) * (lo - lq)).sum(1)
    assert abs(r.kl.mean - want.mean()) <= 0.004 + 2 * (gap + gap_q)
    assert r.kl.same_top == pytest.approx(float((lo.argmax(1) == lq.argmax(1)).mean()))
    assert 0 < r.kl.mean < 1
