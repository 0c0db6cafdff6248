"""rwkvfast/threads.py: the default thread count follows the cores other processes leave
free; an explicit count is kept; the model's thread count changes nothing but the speed."""
from __future__ import annotations

import numpy as np
import pytest

import rwkvfast
from rwkvfast.threads import ThreadGovernor

from conftest import fixture_path, reference_ids


class FakeMachine:
    """A clock, the machine's busy CPU seconds and ours, advanced by hand."""

    def __init__(self):
        self.t = self.busy = self.ours = 0.0
        self.samples = 0

    def run(self, seconds, ours_cores, others_cores):
        self.t += seconds
        self.ours += ours_cores * seconds
        self.busy += (ours_cores + others_cores) * seconds

    def governor(self, max_threads=2, n_cpus=2):
        def busy():
            self.samples += 1
            return self.busy
        return ThreadGovernor(max_threads, n_cpus=n_cpus, interval=0.25, busy=busy, ours=lambda: self.ours,
                              clock=lambda: self.t)


def _settle(machine, g, ours, others, steps=4):
    for _ in range(steps):
        machine.run(0.3, ours, others)
        n = g.threads()
    return n


def test_a_quiet_machine_keeps_every_thread():
    m = FakeMachine()
    g = m.governor()
    assert _settle(m, g, ours=2.0, others=0.0) == 2
    assert _settle(m, g, ours=2.0, others=0.3) == 2  # kernel threads, short bursts: not a core


def test_a_process_that_keeps_a_core_busy_takes_a_thread_and_gives_it_back():
    m = FakeMachine()
    g = m.governor()
    m.run(0.3, 2.0, 1.0)
    assert g.threads() == 2  # one interval is not yet a lasting load
    m.run(0.3, 1.0, 1.0)
    assert g.threads() == 1
    assert _settle(m, g, ours=1.0, others=1.0) == 1  # with one thread we leave it its core
    m.run(0.3, 1.0, 0.0)
    assert g.threads() == 2  # the core is free again: one interval gives the thread back


def test_more_cores_than_threads_and_a_fully_busy_machine():
    m = FakeMachine()
    g = m.governor(max_threads=4, n_cpus=8)
    assert _settle(m, g, ours=4.0, others=3.0) == 4  # five cores free: the four asked for
    assert _settle(m, g, ours=1.0, others=7.0, steps=8) == 1  # never fewer than one


def test_it_samples_at_most_once_per_interval():
    m = FakeMachine()
    g = m.governor()
    before = m.samples
    for _ in range(100):
        m.run(0.001, 2.0, 0.0)
        g.threads()
    assert m.samples - before == 0  # 0.1 s: no new sample yet
    m.run(0.2, 2.0, 0.0)
    g.threads()
    assert m.samples - before == 1


def test_without_proc_stat_it_answers_the_maximum():
    g = ThreadGovernor(3, n_cpus=4, busy=lambda: None)
    assert g.threads() == 3


def test_bad_counts_are_value_errors():
    with pytest.raises(ValueError, match="max_threads"):
        ThreadGovernor(0)
    with rwkvfast.Model(fixture_path("tiny/gguf/tiny-F32.gguf"), n_threads=2) as m:
        with pytest.raises(ValueError, match="n_threads must be in 1..1024"):
            m._m.set_n_threads(0)


def test_the_default_count_is_governed_and_an_explicit_one_is_kept():
    path = fixture_path("tiny/gguf/tiny-F32.gguf")
    with rwkvfast.Model(path) as m:
        assert m._governor is not None and m._governor.max_threads == m.info["n_threads"]
    with rwkvfast.Model(path, n_threads=2) as m:
        assert m._governor is None


@pytest.mark.parametrize("fixture", ["tiny/gguf/tiny-Q4_K_M.gguf", "rwkv7/tiny7/gguf/tiny7-Q8_0.gguf"])
def test_the_thread_count_changes_no_logit(fixture):
    ids = reference_ids("rwkv7/tiny7" if "tiny7" in fixture else "tiny")[:20]
    with rwkvfast.Model(fixture_path(fixture), n_threads=2) as m:
        two = m.forward(ids, m.new_state(), all_logits=True)
        m._m.set_n_threads(1)
        assert m.info["n_threads"] == 1
        one = m.forward(ids, m.new_state(), all_logits=True)
        s = m.new_state()
        steps = np.stack([m.forward(t, s) for t in ids])
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(steps, two)
