"""rwkvfast-server as a user runs it: flags, and a live server on 127.0.0.1."""
from __future__ import annotations

import json
import re
import signal
import threading
import time

import httpx
import pytest

from conftest import live_server
from rwkvfast.cli.server import main
from rwkvfast.testing import make_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return str(make_model(tmp_path_factory.mktemp("srv") / "m.gguf", n_layer=2, n_embd=64, vocab=300, head_size=32))


@pytest.mark.parametrize("argv,msg", [(["-np", "0"], "parallel"), (["--port", "-1"], "port"),
                                      (["--top-p", "3"], "top_p"), (["--bogus"], "unrecognized"),
                                      (["-c", "-1"], "ctx-size"), (["--header-timeout", "0"], "header-timeout"),
                                      (["--max-connections", "0"], "max-connections")])
def test_bad_flags_exit_2(model_path, capsys, argv, msg):
    with pytest.raises(SystemExit) as e:
        main(["-m", model_path, *argv])
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_a_missing_model_is_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["-m", str(tmp_path / "none.gguf")]) == 1
    assert capsys.readouterr().err.startswith("error:")


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(f"rwkvfast:{name} ")))


def _until_idle(url: str, why: str) -> None:
    deadline = time.monotonic() + 60
    while _metric(url, "requests_processing") != 0:
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def test_the_official_openai_client_works_against_a_live_server(model_path):
    import openai  # a test extra (heavy to import, so only here)
    with live_server(model_path, "-t", "1", "--api-key", "k3y", "--cors-origins", "http://app.example/, http://b.example") \
            as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="k3y", max_retries=0)
        msgs = [{"role": "user", "content": "Hi"}]
        r = client.chat.completions.create(model="x", messages=msgs, max_tokens=6, temperature=0)
        assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens <= 6
        chunks = list(client.chat.completions.create(model="x", messages=msgs, max_tokens=6, temperature=0,
                                                     stream=True))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == r.choices[0].message.content
        assert chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason
        c = client.completions.create(model="x", prompt="Once", max_tokens=4, temperature=0, seed=1)
        streamed = "".join(ch.choices[0].text for ch in
                           client.completions.create(model="x", prompt="Once", max_tokens=4, temperature=0,
                                                     stream=True))
        assert streamed == c.choices[0].text
        assert [m.id for m in client.models.list()] == ["m.gguf"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
        with pytest.raises(openai.BadRequestError):
            client.completions.create(model="x", prompt="Once", max_tokens=4, n=2)
        used = list(client.chat.completions.create(model="x", messages=msgs, max_tokens=6, temperature=0, stream=True,
                                                   stream_options={"include_usage": True}, user="u1"))
        assert used[-1].choices == [] and used[-1].usage.completion_tokens == r.usage.completion_tokens
        assert r.system_fingerprint and r.system_fingerprint.startswith("rwkvfast-")
        lp = client.chat.completions.create(model="x", messages=msgs, max_tokens=6, temperature=0, logprobs=True,
                                            top_logprobs=2).choices[0].logprobs.content
        assert 0 < len(lp) <= 6 and all(len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token for t in lp)
        clp = client.completions.create(model="x", prompt="Once", max_tokens=4, temperature=0, logprobs=1)
        assert "".join(clp.choices[0].logprobs.tokens) == clp.choices[0].text
        # content parts, and llama-server's paths without /v1 (clients configured with the bare URL)
        bare = openai.OpenAI(base_url=url, api_key="k3y", max_retries=0)
        parts = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
        assert bare.chat.completions.create(model="x", messages=parts, max_tokens=6, temperature=0) \
            .choices[0].message.content == r.choices[0].message.content
        with pytest.raises(openai.BadRequestError, match="text only"):
            client.chat.completions.create(model="x", max_tokens=4, messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
        # a page on a named origin may call the API (the trailing slash of the flag is forgiven); others may not
        ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        for origin, ok in (("http://app.example", True), ("http://b.example", True), ("http://c.example", False)):
            pre = httpx.options(f"{url}/v1/chat/completions", headers={**ask, "Origin": origin}, timeout=10)
            assert (pre.status_code == 200 and pre.headers["access-control-allow-origin"] == origin) == ok


def test_a_live_server_answers_and_shuts_down(model_path):
    with live_server(model_path, "-t", "1", "-c", "0", "--alias", "demo") as (url, p):  # -c 0: no budget, endless answers
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["id"] == "demo"
        r = httpx.post(f"{url}/v1/completions", json={"prompt": "Hello", "max_tokens": 5, "temperature": 0},
                       timeout=60).json()
        assert r["usage"]["completion_tokens"] <= 5 and r["object"] == "text_completion"
        # a client that leaves frees its slot: an endless generation, read a little, hang up
        endless = {"prompt": "Hi", "max_tokens": -1, "logit_bias": {"0": -100}}
        with httpx.stream("POST", f"{url}/v1/completions", json={**endless, "stream": True}, timeout=60) as s:
            next(s.iter_lines())
        _until_idle(url, "the abandoned stream kept its slot")
        with pytest.raises(httpx.ReadTimeout):  # the same without streaming: a client that gives up
            httpx.post(f"{url}/v1/completions", json=endless, timeout=httpx.Timeout(60, read=1))
        _until_idle(url, "the abandoned request kept its slot")
        # both count, as cancelled, under our names and llama-server's
        text = httpx.get(f"{url}/metrics", timeout=10).text
        got = {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if ln and not ln.startswith("#")}
        assert got["rwkvfast:requests_total"] == 3 and got["rwkvfast:requests_cancelled_total"] == 2
        assert got["llamacpp:tokens_predicted_total"] == got["rwkvfast:tokens_predicted_total"] > 5
        assert got["llamacpp:prompt_tokens_total"] == got["rwkvfast:prompt_tokens_total"] > 0
        assert got["llamacpp:requests_processing"] == got["llamacpp:requests_deferred"] == 0
        for name in ("prompt_seconds_total", "tokens_predicted_seconds_total", "prompt_tokens_seconds",
                     "predicted_tokens_seconds"):
            assert got[f"llamacpp:{name}"] > 0, name
    assert p.returncode == 0, p.stderr.read()  # Ctrl-C: a graceful shutdown and exit status 0
    log = p.stderr.read()
    assert re.search(r"\d\d:\d\d:\d\d 127\.0\.0\.1 POST /v1/completions 200 \d+ ms prompt \d+ \(cached \d+\) "
                     r"predicted [1-5] (length|stop)\n", log), log
    assert re.search(r"POST /v1/completions \d+ \d+ ms prompt \d+ \(cached \d+\) predicted \d+ cancelled", log), log


def test_log_disable_and_no_webui(model_path):
    with live_server(model_path, "-t", "1", "--log-disable", "--no-webui") as (url, p):
        assert httpx.get(f"{url}/", timeout=10).status_code == 404
        assert httpx.post(f"{url}/tokenize", json={"content": "a"}, timeout=10).status_code == 200
    assert "/tokenize" not in p.stderr.read()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_generating_server_within_seconds(model_path, sig):
    endless = {"prompt": "Hi", "max_tokens": -1, "logit_bias": {"0": -100}}  # -c 0: nothing ends these
    with live_server(model_path, "-t", "1", "-c", "0") as (url, p):
        streamed, plain = [], []

        def stream() -> None:
            with httpx.stream("POST", f"{url}/v1/completions", timeout=60, json={**endless, "stream": True}) as s:
                streamed.extend(ln for ln in s.iter_lines() if ln)

        def wait() -> None:
            plain.append(httpx.post(f"{url}/completion", json={"prompt": "Hi", "n_predict": -1,
                                                                "logit_bias": {"0": -100}}, timeout=60))
        threads = [threading.Thread(target=f) for f in (stream, wait)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while _metric(url, "requests_processing") < 2:
            assert time.monotonic() < deadline, "the two generations did not start"
            time.sleep(0.05)
        t0 = time.monotonic()
        p.send_signal(sig)
        assert p.wait(timeout=30) == 0, p.stderr.read()
        took = time.monotonic() - t0
        for t in threads:
            t.join(30)
    assert took < 10, f"the server took {took:.1f} s to stop"
    assert streamed[-1] == "data: [DONE]" and "shutting down" in json.loads(streamed[-2][6:])["error"]["message"]
    assert plain[0].status_code == 503 and "shutting down" in plain[0].json()["error"]["message"]


def test_eight_concurrent_streaming_clients_get_what_each_gets_alone(model_path):
    from concurrent.futures import ThreadPoolExecutor

    def stream(prompt: str) -> str:
        body = {"prompt": prompt, "max_tokens": 10, "temperature": 0, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as s:
            lines = [ln for ln in s.iter_lines() if ln]
        assert lines[-1] == "data: [DONE]"
        return "".join(json.loads(ln[6:])["choices"][0]["text"] for ln in lines[:-1])

    with live_server(model_path, "-t", "1", "-np", "4", "--prompt-chunk", "3") as (url, _):
        prompts = [f"Story number {i}:" + " once" * i for i in range(8)]
        alone = [stream(q) for q in prompts]
        with ThreadPoolExecutor(8) as pool:  # 8 clients, 4 slots: half of them queue
            together = list(pool.map(stream, prompts))
        assert together == alone and any(alone)
