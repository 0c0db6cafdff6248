"""rwkvfast-chat: llama-cli's command lines, a chat driven through a pseudo-terminal, states, bad flags."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time

import numpy as np
import pytest

import rwkvfast
from rwkvfast.cli.chat import main
from rwkvfast.state import State

from conftest import fixture_path
from torch_zip import write_torch_zip

GUIDE_PROMPT = "User: What's mbti?tell me in chinese.\\n\\nAssistant:"  # as typed in the guide's shell line


@pytest.fixture(scope="module")
def model_path():
    return str(fixture_path("tiny/gguf/tiny-F32.gguf"))


def test_guide_completion_command(model_path, capsys):
    argv = ["-m", model_path, "-p", GUIDE_PROMPT, "-no-cnv", "-t", "8", "-ngl", "99", "-n", "24", "-s", "7"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("User: What's mbti?tell me in chinese.\n\nAssistant:")  # -e is on: \n is a newline
    # with a Vulkan device the layers go there, without one the CPU runs them and says so
    assert "-ngl 99" in err and ("on the GPU" in err or "running on the CPU" in err) and "tokens per second" in err
    assert main(argv) == 0
    assert capsys.readouterr().out == out  # same seed, same text
    assert main(argv + ["-b", "3"]) == 0
    assert capsys.readouterr().out == out  # the prompt in chunks of 3 tokens: the same text


def test_guide_chat_command_from_a_pipe(model_path):
    cmd = [sys.executable, "-m", "rwkvfast.cli.chat", "-m", model_path, "-p", "You are a helpful assistant",
           "-cnv", "-t", "8", "-ngl", "99", "-n", "12", "-s", "3"]
    r = subprocess.run(cmd, input="Hello\nWhat is RWKV?\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 2  # one answer line per message
    assert "prompt eval" in r.stderr


@pytest.mark.parametrize("argv,msg", [(["--bogus"], "unrecognized arguments"), (["-n", "abc"], "invalid int"),
                                      (["-cnv", "-no-cnv"], "not allowed with"), (["--top-p", "2"], "top_p"),
                                      (["--temp", "-1"], "temperature"), (["-b", "0"], "batch-size")])
def test_bad_flags_give_usage_and_exit_2(model_path, capsys, argv, msg):
    with pytest.raises(SystemExit) as e:
        main(["-m", model_path, *argv])
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_missing_model_is_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["-m", str(tmp_path / "none.gguf"), "-no-cnv"]) == 1
    assert capsys.readouterr().err.startswith("error:")


def _controlling_tty():
    """In the child: a new session whose controlling terminal is the pty, so ^C becomes SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Pty:
    """The CLI on a pseudo-terminal (so it runs interactively, with readline)."""

    def __init__(self, argv):
        try:
            self.master, slave = pty.openpty()
        except OSError as e:  # a machine without pseudo-terminals
            pytest.skip(f"no pseudo-terminal: {e}")
        self.p = subprocess.Popen([sys.executable, "-m", "rwkvfast.cli.chat", *argv], stdin=slave, stdout=slave,
                                  stderr=slave, close_fds=True, env={**os.environ, "TERM": "dumb"},
                                  preexec_fn=_controlling_tty)
        os.close(slave)
        self.buf = b""

    def expect(self, marker: bytes, timeout: float = 60.0) -> bytes:
        end = time.monotonic() + timeout
        while marker not in self.buf:
            left = end - time.monotonic()
            if left <= 0 or self.p.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                raise AssertionError(f"no {marker!r} in {self.buf[-400:]!r}")
            if select.select([self.master], [], [], min(left, 0.5))[0]:
                try:
                    self.buf += os.read(self.master, 4096)
                except OSError:
                    pass
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def send(self, s: str) -> None:
        os.write(self.master, s.encode())

    def close(self) -> int:
        try:
            return self.p.wait(timeout=60)
        finally:
            os.close(self.master)


def _answer(t: Pty, msg: str) -> bytes:
    t.send(msg + "\n")
    t.expect(msg.encode() + b"\r\n")  # the terminal's echo of the line
    return t.expect(b"> ")[:-2]


@pytest.mark.parametrize("arch", ["rwkv6", "rwkv7"])  # RWKV-7: G1 turns, with the reasoning on
def test_chat_through_a_terminal_save_load_continue_identically(model_path, tmp_path, arch):
    if arch == "rwkv7":
        model_path = str(fixture_path("rwkv7/tiny7/gguf/tiny7-F16.gguf"))
    saved = tmp_path / "chat.state"
    t = Pty(["-m", model_path, "-p", "You are a helpful assistant", "-n", "10", "--temp", "0", "-t", "1"])
    t.expect(b"> ")
    _answer(t, "Hello")
    t.send(f"/save {saved}\n")
    t.expect(b"(state saved")
    t.expect(b"> ")
    a = _answer(t, "Tell me more")
    t.send(f"/load {saved}\n")
    t.expect(b"(state loaded")
    t.expect(b"> ")
    b = _answer(t, "Tell me more")
    assert a == b and a.strip()
    t.send("/help\n")
    t.expect(b"/regen")
    t.expect(b"> ")
    t.send("\x04")  # Ctrl-D
    t.expect(b"tokens per second")
    assert t.close() == 0
    assert saved.exists()


def test_ctrl_c_at_the_prompt_exits_cleanly(model_path):
    t = Pty(["-m", model_path, "-n", "4", "-t", "1"])
    t.expect(b"> ")
    # CPython's readline can miss a SIGINT that lands after the prompt is printed but before its select() starts
    # (the signal is noted, select() still waits for a key). A person presses Ctrl-C again; so does this test.
    for _ in range(5):
        t.send("\x03")  # Ctrl-C: the terminal sends SIGINT
        try:
            t.expect(b"tokens per second", timeout=5.0)
            break
        except AssertionError:
            if t.p.poll() is not None:
                raise
    else:
        pytest.fail("five Ctrl-C at the prompt did not end the chat")
    assert t.close() == 0


def test_state_tuning_file_starts_the_chat(model_path, tmp_path, capsys):
    with rwkvfast.Model(model_path) as m:
        L, H, N = m.info["n_layer"], m.info["n_head"], m.info["head_size"]
        rng = np.random.default_rng(0)
        ts = {f"blocks.{i}.att.time_state": rng.standard_normal((H, N, N)).astype(np.float32) * 0.1 for i in range(L)}
        pth = write_torch_zip(tmp_path / "tuned.pth", ts)
        st = State.open(pth, m)
        np.testing.assert_array_equal(st.wkv[1], ts["blocks.1.att.time_state"].transpose(0, 2, 1))
        bad = write_torch_zip(tmp_path / "bad.pth", {"blocks.0.att.time_state": np.zeros((H, N, N - 1), np.float32)})
        with pytest.raises(ValueError, match="time_state has shape"):
            State.open(bad, m)
    assert main(["-m", model_path, "--state", str(pth), "-p", "Hi", "-no-cnv", "-n", "5", "-s", "1"]) == 0
    assert main(["-m", model_path, "--state", str(bad), "-p", "Hi", "-no-cnv"]) == 1
    assert "time_state has shape" in capsys.readouterr().err


def test_prompt_cache_reuses_the_prompt_state(model_path, tmp_path, capsys):
    cache = tmp_path / "p.cache"
    argv = ["-m", model_path, "-p", "A long prompt to keep", "-no-cnv", "-n", "8", "-s", "2",
            "--prompt-cache", str(cache)]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert cache.exists() and "matches" not in first.err
    assert main(argv) == 0
    second = capsys.readouterr()
    assert "matches" in second.err and second.out == first.out


def test_ctrl_c_during_an_answer_stops_it_and_the_chat_goes_on(tmp_path):
    from rwkvfast.testing import make_model
    slow = make_model(tmp_path / "slow.gguf", n_layer=8, n_embd=1024, vocab=4096, seed=1)  # ~ms per token
    t = Pty(["-m", str(slow), "-n", "100000", "-t", "1", "-s", "1"])
    t.expect(b"> ")
    t.send("Tell me a long story\n")
    t.expect(b"Tell me a long story\r\n")
    deadline = time.monotonic() + 30
    while len(t.buf) < 20 and time.monotonic() < deadline:  # the answer is streaming
        if select.select([t.master], [], [], 0.2)[0]:
            t.buf += os.read(t.master, 4096)
    t.send("\x03")
    t.expect(b"> ")  # back at the prompt, not out of the program
    t.send("/exit\n")
    t.expect(b"tokens per second")
    assert t.close() == 0


@pytest.mark.parametrize("env,threads", [({}, "2"), ({"RWKVFAST_CPU": "scalar"}, "1")])
def test_same_seed_same_text_on_every_level_and_thread_count(model_path, env, threads):
    def run(e, t):
        cmd = [sys.executable, "-m", "rwkvfast.cli.chat", "-m", model_path, "-p", "Once upon a time", "-no-cnv",
               "-n", "24", "-s", "11", "-t", t]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **e}, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout
    assert run(env, threads) == run({}, "1")


def test_prompt_from_a_file_and_system_prompt_flag(model_path, tmp_path, capsys):
    f = tmp_path / "p.txt"
    f.write_text("Once upon a time", encoding="utf-8")
    assert main(["-m", model_path, "-f", str(f), "-no-cnv", "-n", "4", "-s", "1"]) == 0
    assert capsys.readouterr().out.startswith("Once upon a time")
    r = subprocess.run([sys.executable, "-m", "rwkvfast.cli.chat", "-m", model_path, "-sys", "Be brief", "-n", "4",
                        "-s", "1", "-v"], input="Hi\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "prompt tokens" in r.stderr


@pytest.mark.parametrize("how", ["env", "flag"])
def test_ngl_without_a_usable_device_warns_once_and_runs_on_the_cpu(model_path, capsys, monkeypatch, how):
    argv = ["-m", model_path, "-p", "Hi", "-no-cnv", "-ngl", "99", "-n", "4", "-s", "1"]
    if how == "env":
        monkeypatch.setenv("RWKVFAST_VK_DEVICE", "99")  # no such device (or no backend at all)
    else:
        argv += ["--device", "99"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("warning: -ngl 99:") == 1 and "running on the CPU" in err
