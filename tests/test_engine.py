"""The engine: concurrent batched jobs give what each gives alone, prompts are fed in chunks
between decode steps, cancellation frees a slot, and the state cache skips known prefixes;
for an RWKV-6 and an RWKV-7 model alike."""
from __future__ import annotations

import pytest

import rwkvfast
from rwkvfast import Sampler
from rwkvfast.server.engine import Engine
from rwkvfast.generate import generate
from rwkvfast.sampler import SamplerParams
from rwkvfast.server.state_cache import StateCache
from rwkvfast.testing import make_model, make_model7


@pytest.fixture(scope="module", params=["rwkv6", "rwkv7"])
def model(tmp_path_factory, request):
    shape = dict(n_layer=2, n_embd=64, vocab=300, head_size=32)
    path = tmp_path_factory.mktemp("eng") / "m.gguf"
    if request.param == "rwkv6":
        make_model(path, **shape)
    else:
        make_model7(path, lora=(8, 8, 8, 16), **shape)
    with rwkvfast.Model(path, n_threads=1) as m:
        yield m


def _greedy(m):
    return Sampler(m.n_vocab, SamplerParams(temperature=0.0))


def _alone(m, prompt, n, stop=()):
    g = generate(m, prompt, m.new_state(), _greedy(m), max_tokens=n, stop=stop, stop_on_eos=False)
    text = "".join(g)
    return text, g.result.tokens


PROMPTS = [[5, 6, 7], [9] * 11, [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9], [42]]


def test_concurrent_jobs_give_what_each_gives_alone(model):
    eng = Engine(model, n_parallel=3, prompt_chunk=4).start()
    try:
        jobs = [eng.submit(p, _greedy(model), max_tokens=12 + i, stop_on_eos=False) for i, p in enumerate(PROMPTS)]
        pieces = [list(j) for j in jobs]
    finally:
        eng.close()
    for i, (p, j) in enumerate(zip(PROMPTS, jobs)):
        text, tokens = _alone(model, p, 12 + i)
        assert j.result.tokens == tokens and j.result.text == text == "".join(pieces[i])
        assert j.result.finish_reason == "length" and j.result.prompt_n == len(p)


def test_a_long_prompt_is_fed_in_chunks_between_decode_steps(model):
    eng = Engine(model, n_parallel=2, prompt_chunk=4)
    a = eng.submit([1, 2], _greedy(model), max_tokens=50, stop_on_eos=False)
    eng.step()  # a's prompt
    eng.step()  # a's first token
    b = eng.submit(list(range(10, 30)), _greedy(model), max_tokens=1, stop_on_eos=False)
    for k in range(1, 5):
        n_a = len(a.result.tokens)
        eng.step()
        assert b.result.prompt_n == 4 * k  # one chunk of b per step ...
        assert len(a.result.tokens) == n_a + 1  # ... and a token of a in the same step
    eng.close()
    assert a.result.finish_reason == "cancelled"


def test_cancelling_frees_the_slot_for_the_next_job(model):
    eng = Engine(model, n_parallel=1, prompt_chunk=64)
    first = eng.submit([7, 7, 7], _greedy(model), max_tokens=-1, stop_on_eos=False)
    second = eng.submit([8, 8], _greedy(model), max_tokens=3, stop_on_eos=False)
    for _ in range(3):
        eng.step()
    assert eng.n_active == 1 and eng.queue_length == 1 and second.result.prompt_n == 0
    first.cancel()
    while eng.step():
        pass
    assert first.result.finish_reason == "cancelled" and first.done
    assert second.result.tokens == _alone(model, [8, 8], 3)[1]


def test_stop_strings_end_a_job_and_are_not_emitted(model):
    text, _ = _alone(model, [5, 6, 7], 30)
    stop = text[5:8]
    assert len(stop) == 3
    eng = Engine(model)
    job = eng.submit([5, 6, 7], _greedy(model), max_tokens=30, stop=[stop], stop_on_eos=False)
    while eng.step():
        pass
    assert job.result.finish_reason == "stop" and job.result.stop == stop
    assert job.result.text == text[:text.index(stop)]


def test_the_state_cache_makes_the_next_turn_process_only_new_tokens(model):
    cache = StateCache(model, 64 << 20)
    eng = Engine(model, cache=cache)
    turn1 = eng.submit([5, 6, 7, 8], _greedy(model), max_tokens=6, stop_on_eos=False)
    while eng.step():
        pass
    history = turn1.prompt + turn1.result.tokens
    turn2 = eng.submit(history + [9, 10], _greedy(model), max_tokens=5, stop_on_eos=False)
    again = eng.submit(turn1.prompt, _greedy(model), max_tokens=6, stop_on_eos=False)  # a regenerate
    while eng.step():
        pass
    assert turn2.result.cache_n == len(history) and turn2.result.prompt_n == 2
    assert turn2.result.tokens == _alone(model, history + [9, 10], 5)[1]
    assert again.result.cache_n == 4 and again.result.prompt_n == 0
    assert again.result.tokens == turn1.result.tokens


def test_a_shared_system_prompt_is_processed_once_through_its_checkpoint(model):
    cache = StateCache(model, 64 << 20)
    eng = Engine(model, cache=cache)
    system = list(range(20, 60))
    a = eng.submit(system + [7, 8, 9], _greedy(model), max_tokens=4, stop_on_eos=False, checkpoints=[len(system)])
    while eng.step():
        pass
    b = eng.submit(system + [1, 2], _greedy(model), max_tokens=4, stop_on_eos=False)  # another chat
    while eng.step():
        pass
    assert a.result.prompt_n == len(system) + 3 and b.result.cache_n == len(system) and b.result.prompt_n == 2
    assert b.result.tokens == _alone(model, system + [1, 2], 4)[1]  # the checkpoint state is exact


def test_prompt_chunks_shrink_to_the_step_budget_while_others_generate(model):
    eng = Engine(model, n_parallel=2, prompt_chunk=256, step_seconds=1e-9)
    a = eng.submit([1, 2], _greedy(model), max_tokens=50, stop_on_eos=False)
    eng.step()
    long = eng.submit(list(range(10, 110)), _greedy(model), max_tokens=1, stop_on_eos=False)
    eng.step()
    assert long.result.prompt_n == 16  # the smallest chunk: a waits for its next token
    a.cancel()
    eng.step()
    eng.step()
    assert long.result.prompt_n == 100  # nobody waits: the rest in one chunk
    eng.close()


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="n_parallel"):
        Engine(model, n_parallel=0)
    with pytest.raises(ValueError, match="prompt_chunk"):
        Engine(model, prompt_chunk=0)
    eng = Engine(model)
    with pytest.raises(ValueError, match="prompt token"):
        eng.submit([], _greedy(model))
    eng.close()
    with pytest.raises(RuntimeError, match="closed"):
        eng.submit([1], _greedy(model))


def test_a_job_the_machine_has_no_memory_for_is_refused(model):
    from rwkvfast.server.engine import Overloaded
    from rwkvfast.server.memory import BYTES_PER_TOKEN, MemoryGuard, available_memory

    free = [(1 << 30) + 100_000 * BYTES_PER_TOKEN]
    eng = Engine(model, memory=MemoryGuard(reserve=1 << 30, probe=lambda: free[0]))
    eng.submit([1] * 1000, _greedy(model), max_tokens=1)  # fits
    with pytest.raises(Overloaded, match="a prompt of 200000 tokens needs about"):
        eng.submit([1] * 200_000, _greedy(model), max_tokens=1)
    assert eng.queue_length == 1
    eng.close()
    avail = available_memory()
    assert avail is None or avail > 0  # Linux: MemAvailable, in bytes


def test_a_long_prompt_does_not_hold_up_a_short_one(model):
    eng = Engine(model, n_parallel=2, prompt_chunk=4)
    long = eng.submit(list(range(1, 101)), _greedy(model), max_tokens=1, stop_on_eos=False)
    eng.step()
    short = eng.submit([7, 8, 9, 10, 11, 12, 13, 14], _greedy(model), max_tokens=1, stop_on_eos=False)
    steps = 0
    while not short.done:
        eng.step()
        steps += 1
    assert steps <= 4 and long.result.prompt_n < 100  # the chunks took turns
    eng.close()


def test_stop_accepting_ends_every_job_and_refuses_new_ones(model):
    from rwkvfast.server.engine import Overloaded
    eng = Engine(model, n_parallel=1, prompt_chunk=4)
    running = eng.submit([1, 2, 3], _greedy(model), max_tokens=-1, stop_on_eos=False)
    waiting = eng.submit([4, 5], _greedy(model), max_tokens=-1, stop_on_eos=False)
    eng.step()
    eng.step()
    assert len(running.result.tokens) > 0 and not waiting.done
    eng.stop_accepting()
    with pytest.raises(Overloaded, match="shutting down"):
        eng.submit([6], _greedy(model), max_tokens=1)
    eng.step()  # the next step ends both: nothing generates forever once the server stops
    assert running.done and waiting.done
    assert running.result.finish_reason == waiting.result.finish_reason == "cancelled"
    assert eng.n_active == 0 and eng.queue_length == 0
    eng.close()


def test_logprobs_are_the_model_s_log_softmax_at_each_token(model):
    import numpy as np
    eng = Engine(model, n_parallel=2, prompt_chunk=4)
    prompt = [5, 6, 7, 8, 9]
    job = eng.submit(prompt, _greedy(model), max_tokens=4, stop_on_eos=False, logprobs=3)
    plain = eng.submit(prompt, _greedy(model), max_tokens=4, stop_on_eos=False)
    while eng.step():
        pass
    assert plain.result.logprobs == [] and job.result.tokens == plain.result.tokens
    state = model.new_state()
    logits = model.forward(prompt, state)
    for t, (tok, lp, top) in zip(job.result.tokens, job.result.logprobs):
        x = logits.astype(np.float64)
        ref = x - (x.max() + np.log(np.exp(x - x.max()).sum()))
        assert tok == t and lp == pytest.approx(ref[t], abs=1e-9)
        order = np.argsort(-ref, kind="stable")[:3]
        assert [i for i, _ in top] == order.tolist() and [v for _, v in top] == pytest.approx(ref[order], abs=1e-9)
        assert top[0][0] == t  # greedy: the likeliest
        logits = model.forward([t], state)
    with pytest.raises(ValueError, match="logprobs"):
        eng.submit(prompt, _greedy(model), logprobs=65)
