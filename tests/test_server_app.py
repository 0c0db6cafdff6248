"""The HTTP endpoints (in-process through Starlette's test client; the live server, the
openai client and the web page come with rwkvfast-server)."""
from __future__ import annotations

import json
import re

import pytest
from starlette.testclient import TestClient

import rwkvfast
from rwkvfast import Sampler
from rwkvfast.generate import generate
from rwkvfast.sampler import SamplerParams
from rwkvfast.server.app import App, ServerConfig
from rwkvfast.server.engine import Engine
from rwkvfast.testing import make_model


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = make_model(tmp_path_factory.mktemp("app") / "m.gguf", n_layer=2, n_embd=64, vocab=300, head_size=32)
    with rwkvfast.Model(path, n_threads=1) as m:
        eng = Engine(m, n_parallel=4).start()
        try:
            yield m, TestClient(App(m, eng, ServerConfig(alias="tiny")))
        finally:
            eng.close()


def _greedy_text(m, prompt, n):
    g = generate(m, prompt, m.new_state(), Sampler(m.n_vocab, SamplerParams(temperature=0.0)), max_tokens=n)
    return "".join(g), g.result


def test_health_models_tokenize_detokenize(server):
    m, c = server
    assert c.get("/health").json() == {"status": "ok"}
    assert c.get("/v1/models").json()["data"][0]["id"] == "tiny"
    toks = c.post("/tokenize", json={"content": "Hello world"}).json()["tokens"]
    assert toks == m.tokenizer.encode("Hello world")
    assert c.post("/detokenize", json={"tokens": toks}).json()["content"] == "Hello world"


def test_a_completion_is_the_greedy_generation_and_streams_the_same_text(server):
    m, c = server
    want, res = _greedy_text(m, "Once upon", 12)
    body = {"prompt": "Once upon", "max_tokens": 12, "temperature": 0}
    r = c.post("/v1/completions", json=body).json()
    assert r["choices"][0]["text"] == want and r["usage"]["completion_tokens"] == len(res.tokens)
    assert r["choices"][0]["finish_reason"] == ("length" if res.stop_reason == "length" else "stop")
    assert r["timings"]["prompt_n"] == len(m.tokenizer.encode("Once upon"))
    with c.stream("POST", "/v1/completions", json={**body, "stream": True}) as s:
        lines = [ln for ln in s.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert "".join(ch["choices"][0]["text"] for ch in chunks) == want
    assert chunks[-1]["choices"][0]["finish_reason"] == r["choices"][0]["finish_reason"]


def test_a_chat_completion_in_the_world_format(server):
    m, c = server
    prompt = "System: Be brief.\n\nUser: Hi\n\nAssistant:"
    want, _ = _greedy_text(m, prompt, 8)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    r = c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 8, "temperature": 0}).json()
    got = r["choices"][0]["message"]
    assert got["role"] == "assistant"
    assert got["content"] == want.split("\n\n")[0].lstrip(" ")
    with c.stream("POST", "/v1/chat/completions", json={"messages": msgs, "max_tokens": 8, "temperature": 0,
                                                          "stream": True}) as s:
        lines = [ln for ln in s.iter_lines() if ln]
    deltas = [json.loads(ln[6:])["choices"][0]["delta"] for ln in lines[:-1]]
    assert deltas[0]["role"] == "assistant" and "".join(d.get("content", "") for d in deltas) == got["content"]


def test_llama_server_s_unprefixed_aliases_answer_as_the_v1_endpoints(server):
    _, c = server
    assert c.get("/v1/health").json() == c.get("/health").json()
    assert c.get("/models").json()["data"] == c.get("/v1/models").json()["data"]
    body = {"prompt": "Once upon", "max_tokens": 6, "temperature": 0}
    want = c.post("/v1/completions", json=body).json()["choices"][0]["text"]
    assert c.post("/completions", json=body).json()["choices"][0]["text"] == want
    msgs = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 0}
    want = c.post("/v1/chat/completions", json=msgs).json()["choices"][0]["message"]
    assert c.post("/chat/completions", json=msgs).json()["choices"][0]["message"] == want


def test_content_parts_are_the_text_they_join(server):
    _, c = server
    def answer(content):
        body = {"messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0}
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"], r.json()["usage"]["prompt_tokens"]
    parts = [{"type": "text", "text": "Tell me"}, {"type": "text", "text": "a story"}]
    assert answer(parts) == answer("Tell me\na story")
    assert answer([{"type": "text", "text": "Hi"}]) == answer("Hi")


@pytest.mark.parametrize("content,where,text", [
    ([{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}],
     "'messages[0].content[1]'", "text only"),
    ([{"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}], "'messages[0].content[0]'", "audio"),
    ([{"type": "text"}], "'messages[0].content[0]'", "text part"),
    (["hi"], "'messages[0].content[0]'", "text part"),
    ({"text": "hi"}, "'messages[0].content'", "list of content parts"),
    (None, "'messages[0].content'", "string"),
])
def test_content_that_is_not_text_is_a_400_naming_the_part(server, content, where, text):
    _, c = server
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]})
    assert r.status_code == 400
    msg = r.json()["error"]["message"]
    assert where in msg and text in msg


def test_cors_lets_only_the_named_origins_call_the_api(server):
    m, c = server
    ask = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    # the default: no cross-origin page may call it
    assert "access-control-allow-origin" not in c.get("/v1/models", headers={"Origin": "http://app.example"}).headers
    assert c.options("/v1/chat/completions", headers=ask).status_code in (404, 405)
    open_to = TestClient(App(m, Engine(m), ServerConfig(cors_origins=("http://app.example",))))
    pre = open_to.options("/v1/chat/completions", headers=ask)
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://app.example"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    got = open_to.post("/tokenize", json={"content": "a"}, headers={"Origin": "http://app.example"})
    assert got.status_code == 200 and got.headers["access-control-allow-origin"] == "http://app.example"
    other = open_to.get("/v1/models", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    assert open_to.options("/v1/models", headers={**ask, "Origin": "http://evil.example"}).status_code == 400
    anyone = TestClient(App(m, Engine(m), ServerConfig(cors_origins=("*",))))
    assert anyone.get("/v1/models", headers={"Origin": "http://x.example"}).headers["access-control-allow-origin"] == "*"


def test_apply_template_is_the_prompt_a_chat_request_runs(server):
    m, c = server
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello\n\n\nthere"}, {"role": "user", "content": "More"}]
    prompt = c.post("/apply-template", json={"messages": msgs}).json()["prompt"]
    assert prompt == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello\nthere\n\nUser: More\n\nAssistant:"
    want, _ = _greedy_text(m, prompt, 8)
    got = c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 8, "temperature": 0}).json()
    assert got["choices"][0]["message"]["content"] == want.split("\n\n")[0].lstrip(" ")
    bad = c.post("/apply-template", json={"messages": [{"role": "user", "content": 3}]})
    assert bad.status_code == 400 and "'messages[0].content'" in bad.json()["error"]["message"]


def _sse_json(c, path, body):
    with c.stream("POST", path, json={**body, "stream": True}) as s:
        lines = [ln for ln in s.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(ln[6:]) for ln in lines[:-1]]


def test_chat_logprobs_stream_as_they_answer_and_spell_the_text(server):
    m, c = server
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10, "temperature": 0,
            "logprobs": True, "top_logprobs": 3}
    r = c.post("/v1/chat/completions", json=body).json()["choices"][0]
    items = r["logprobs"]["content"]
    assert r["logprobs"]["refusal"] is None and 0 < len(items) <= 10
    raw = bytes(b for it in items for b in it["bytes"]).decode("utf-8", "replace")
    assert raw.lstrip(" ").startswith(r["message"]["content"])  # the World answer's leading space aside
    for it in items:  # greedy: each token is its step's likeliest; probabilities, most likely first
        tops = it["top_logprobs"]
        assert len(tops) == 3 and tops[0]["bytes"] == it["bytes"] and tops[0]["logprob"] == it["logprob"] <= 0
        assert tops[0]["logprob"] >= tops[1]["logprob"] >= tops[2]["logprob"]
    chunks = _sse_json(c, "/v1/chat/completions", body)
    streamed = [it for ch in chunks for it in (ch["choices"][0]["logprobs"] or {"content": []})["content"]]
    assert streamed == items
    plain = c.post("/v1/chat/completions", json={**body, "logprobs": False, "top_logprobs": None}).json()
    assert plain["choices"][0]["logprobs"] is None
    assert plain["choices"][0]["message"]["content"] == r["message"]["content"]


def test_completion_logprobs_cover_the_text_and_stop_where_it_stops(server):
    m, c = server
    free = c.post("/v1/completions", json={"prompt": "Once upon", "max_tokens": 12, "temperature": 0,
                                           "logprobs": 2}).json()["choices"][0]
    lp = free["logprobs"]
    assert "".join(lp["tokens"]) == free["text"] and len(lp["tokens"]) == len(lp["token_logprobs"]) == 12
    assert lp["text_offset"] == [sum(len(t) for t in lp["tokens"][:i]) for i in range(12)]
    assert all(len(top) <= 2 and max(top.values()) == pytest.approx(v) for top, v in
               zip(lp["top_logprobs"], lp["token_logprobs"]))
    stop = free["text"][len(free["text"]) // 2:][:2]  # a stop string inside the free answer
    cut = c.post("/v1/completions", json={"prompt": "Once upon", "max_tokens": 12, "temperature": 0,
                                          "logprobs": 2, "stop": [stop]}).json()["choices"][0]
    toks = cut["logprobs"]["tokens"]
    assert "".join(toks).startswith(cut["text"]) and len("".join(toks[:-1])) < len(cut["text"]) or not toks
    assert toks == lp["tokens"][:len(toks)]
    chunks = _sse_json(c, "/v1/completions", {"prompt": "Once upon", "max_tokens": 12, "temperature": 0,
                                              "logprobs": 2, "stop": [stop]})
    assert [t for ch in chunks for t in ch["choices"][0]["logprobs"]["tokens"]] == toks
    offsets = [o for ch in chunks for o in ch["choices"][0]["logprobs"]["text_offset"]]
    assert offsets == cut["logprobs"]["text_offset"]


@pytest.mark.parametrize("path,body,field", [
    ("/v1/chat/completions", {"top_logprobs": 2}, "'top_logprobs' needs 'logprobs'"),
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "'top_logprobs'"),
    ("/v1/chat/completions", {"logprobs": "yes"}, "'logprobs'"),
    ("/v1/completions", {"logprobs": 6}, "'logprobs'"),
    ("/v1/completions", {"logprobs": True}, "'logprobs'"),
])
def test_bad_logprobs_requests_are_400s(server, path, body, field):
    _, c = server
    base = {"messages": [{"role": "user", "content": "Hi"}]} if "chat" in path else {"prompt": "Hi"}
    r = c.post(path, json={**base, **body})
    assert r.status_code == 400 and field in r.json()["error"]["message"]


def test_stream_options_usage_system_fingerprint_and_user(server):
    _, c = server
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
                       ("/v1/completions", {"prompt": "Once"})):
        body = {**body, "max_tokens": 5, "temperature": 0, "user": "someone"}
        whole = c.post(path, json=body).json()
        assert whole["system_fingerprint"].startswith(f"rwkvfast-{rwkvfast.__version__}-")
        chunks = _sse_json(c, path, {**body, "stream_options": {"include_usage": True}})
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
        assert all(ch["system_fingerprint"] == whole["system_fingerprint"] for ch in chunks)
        assert _sse_json(c, path, body)[-1]["choices"] != []  # not asked: no usage-only chunk
        for bad, field in (({"stream_options": {"include_usage": True}}, "'stream_options'"),
                           ({"stream": True, "stream_options": {"include_usage": 1}}, "include_usage"),
                           ({"stream": True, "stream_options": []}, "'stream_options'"),
                           ({"user": 5}, "'user'")):
            r = c.post(path, json={**body, **bad})
            assert r.status_code == 400 and field in r.json()["error"]["message"]


def test_each_request_is_one_log_line_and_the_page_can_be_turned_off(server):
    m, _ = server
    lines: list[str] = []
    eng = Engine(m).start()
    try:
        c = TestClient(App(m, eng, ServerConfig(log=lines.append)))
        r = c.post("/v1/completions", json={"prompt": "Once", "max_tokens": 3, "temperature": 0}).json()
        _sse_json(c, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
        c.get("/nowhere")
        assert len(lines) == 3, lines
        n_prompt = len(m.tokenizer.encode("Once"))
        assert re.fullmatch(rf"\S+ POST /v1/completions 200 \d+ ms prompt {n_prompt} \(cached 0\) predicted "
                            rf"{r['usage']['completion_tokens']} (length|stop)", lines[0]), lines[0]
        assert re.fullmatch(r"\S+ POST /v1/chat/completions 200 \d+ ms prompt \d+ \(cached \d+\) predicted \d+ \w+",
                            lines[1]), lines[1]
        assert re.fullmatch(r"\S+ GET /nowhere 404 \d+ ms", lines[2]), lines[2]
        verbose = TestClient(App(m, eng, ServerConfig(log=lines.append, log_bodies=True, web_ui=False)))
        verbose.post("/tokenize", json={"content": "secret-ish"})
        assert lines[-1].endswith("body {'content': 'secret-ish'}")
        page = verbose.get("/")
        assert page.status_code == 404 and "--no-webui" in page.json()["error"]["message"]
    finally:
        eng.close()


@pytest.mark.parametrize("path,field,value", [
    ("/v1/chat/completions", "tools", [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
    ("/v1/chat/completions", "tool_choice", "required"),
    ("/v1/chat/completions", "response_format", {"type": "json_object"}),
    ("/v1/chat/completions", "modalities", ["text", "audio"]),
    ("/v1/chat/completions", "functions", [{"name": "f"}]),
    ("/v1/completions", "echo", True), ("/v1/completions", "best_of", 3), ("/v1/completions", "suffix", "end"),
])
def test_fields_this_server_cannot_honour_are_400s_naming_them(server, path, field, value):
    _, c = server
    base = {"messages": [{"role": "user", "content": "Hi"}]} if "chat" in path else {"prompt": "Hi"}
    r = c.post(path, json={**base, "max_tokens": 2, field: value})
    assert r.status_code == 400 and f"'{field}' is not supported" in r.json()["error"]["message"]


def test_fields_that_ask_for_nothing_pass(server):
    _, c = server
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "tools": [], "tool_choice": "none",
            "response_format": {"type": "text"}, "modalities": ["text"], "unknown_extension": 1}
    assert c.post("/v1/chat/completions", json=chat).status_code == 200
    assert c.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2, "echo": False, "best_of": 1,
                                           "suffix": ""}).status_code == 200


def test_top_k_1_is_greedy(server):
    _, c = server
    greedy = c.post("/v1/completions", json={"prompt": "Once", "max_tokens": 8, "temperature": 0}).json()
    k1 = c.post("/v1/completions", json={"prompt": "Once", "max_tokens": 8, "temperature": 1.5, "top_p": 1,
                                         "top_k": 1, "seed": 3}).json()
    assert k1["choices"][0]["text"] == greedy["choices"][0]["text"]


@pytest.mark.parametrize("path,body,status,text", [
    ("/v1/completions", b"{not json", 400, "not valid JSON"),
    ("/v1/completions", b"[1]", 400, "JSON object"),
    ("/v1/completions", {"prompt": ""}, 400, "prompt"),
    ("/v1/completions", {"prompt": "a", "n": 2}, 400, "'n'"),
    ("/v1/completions", {"prompt": "a", "temperature": "hot"}, 400, "temperature"),
    ("/v1/completions", {"prompt": "a", "top_p": 2}, 400, "top_p"),
    ("/v1/completions", {"prompt": "a", "top_k": -1}, 400, "top_k"),
    ("/v1/completions", {"prompt": "a", "min_p": 1.5}, 400, "min_p"),
    ("/v1/completions", {"prompt": "a", "max_tokens": 1.5}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "a", "stop": [1]}, 400, "stop"),
    ("/v1/completions", {"prompt": "a", "logit_bias": {"99999": 1}}, 400, "logit_bias"),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
    ("/detokenize", {"tokens": [1, "x"]}, 400, "integers"),
    ("/nowhere", {}, 404, "no endpoint"),
])
def test_bad_requests_get_openai_style_errors(server, path, body, status, text):
    _, c = server
    r = c.post(path, content=body) if isinstance(body, bytes) else c.post(path, json=body)
    assert r.status_code == status
    err = r.json()["error"]
    assert text in err["message"] and err["code"] == status


def test_an_api_key_is_required_when_set(server):
    m, _ = server
    c = TestClient(App(m, Engine(m), ServerConfig(api_key="s3cret")))
    assert c.post("/tokenize", json={"content": "a"}).status_code == 401
    assert c.get("/v1/models").status_code == 401
    ok = c.post("/tokenize", json={"content": "a"}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    page = c.get("/")  # the page holds no secret: it asks for the key and sends it itself
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp  # it can reach this server only
    assert b"<script" in page.content and b"src=" not in page.content.split(b"<script")[1][:20]


def test_llama_server_native_completion_props_and_metrics(server):
    m, c = server
    want, res = _greedy_text(m, "Once upon", 6)
    r = c.post("/completion", json={"prompt": "Once upon", "n_predict": 6, "temperature": 0}).json()
    assert r["content"] == want and r["tokens_predicted"] == len(res.tokens) and r["stop"] is True
    with c.stream("POST", "/completion", json={"prompt": "Once upon", "n_predict": 6, "temperature": 0,
                                               "stream": True}) as s:
        events = [json.loads(ln[6:]) for ln in s.iter_lines() if ln]
    assert "".join(e["content"] for e in events) == want and events[-1]["stop"] is True
    props = c.get("/props").json()
    assert props["total_slots"] == 4 and props["model_alias"] == "tiny" and props["model_path"] == m.path
    assert props["build_info"] == f"rwkvfast {rwkvfast.__version__}" and "User:" in props["chat_template"]
    before = c.get("/metrics").text
    c.post("/v1/completions", json={"prompt": "a", "max_tokens": 2})
    after = c.get("/metrics").text

    def value(text, name):
        return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(f"rwkvfast:{name} ")))
    assert value(after, "requests_total") == value(before, "requests_total") + 1
    assert "# TYPE rwkvfast:requests_deferred gauge" in after


def test_llama_server_completion_fields_probabilities_and_tokens(server):
    from rwkvfast.server.state_cache import StateCache
    m, _ = server
    eng = Engine(m, cache=StateCache(m, 64 << 20)).start()
    try:
        c = TestClient(App(m, eng, ServerConfig()))
        body = {"prompt": "Once upon a time", "n_predict": 6, "temperature": 0, "n_probs": 2, "return_tokens": True}
        want, res = _greedy_text(m, "Once upon a time", 6)
        first = c.post("/completion", json=body).json()
        n_prompt = len(m.tokenizer.encode("Once upon a time"))
        assert first["content"] == want and first["tokens"] == res.tokens and first["truncated"] is False
        assert first["tokens_evaluated"] == n_prompt and first["has_new_line"] == ("\n" in want)
        assert first["generation_settings"]["n_predict"] == 6 and first["generation_settings"]["n_probs"] == 2
        assert first["stop_type"] in ("limit", "eos", "word") and first["model"] == m.path.split("/")[-1]
        probs = first["completion_probabilities"]
        assert [p["id"] for p in probs] == res.tokens[:len(probs)] and len(probs) == len(res.tokens)
        assert all(len(p["top_logprobs"]) == 2 and p["top_logprobs"][0]["id"] == p["id"] for p in probs)
        again = c.post("/completion", json=body).json()  # the prompt now comes from the state cache
        assert again["tokens_cached"] > 0 and again["tokens_evaluated"] == n_prompt
        assert again["timings"]["prompt_n"] < n_prompt
        with c.stream("POST", "/completion", json={**body, "stream": True}) as st:
            events = [json.loads(ln[6:]) for ln in st.iter_lines() if ln]
        assert [p for e in events for p in e.get("completion_probabilities", [])] == probs
        assert events[-1]["stop"] is True and events[-1]["tokens"] == res.tokens
        plain = c.post("/completion", json={"prompt": "Once upon a time", "n_predict": 2}).json()
        assert plain["tokens"] == [] and "completion_probabilities" not in plain
        for bad, field in (({"n_probs": -1}, "'n_probs'"), ({"return_tokens": "yes"}, "'return_tokens'")):
            r = c.post("/completion", json={"prompt": "a", **bad})
            assert r.status_code == 400 and field in r.json()["error"]["message"]
    finally:
        eng.close()


def test_the_second_turn_of_a_chat_processes_only_its_new_tokens(server):
    from rwkvfast.server.state_cache import StateCache
    m, _ = server
    eng = Engine(m, cache=StateCache(m, 64 << 20)).start()
    try:
        c = TestClient(App(m, eng, ServerConfig()))
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        first = c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 8, "temperature": 0}).json()
        t1 = first["timings"]
        msgs += [first["choices"][0]["message"], {"role": "user", "content": "And then?"}]
        second = c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 8, "temperature": 0}).json()
        t2 = second["timings"]
        new = len(m.tokenizer.encode("User: And then?\n\n") + m.tokenizer.encode("Assistant:"))
        ended = first["choices"][0]["finish_reason"] == "stop"
        # what turn 1 fed (its prompt and answer) comes from the cache; only the new turn is processed
        assert t2["cache_n"] == t1["prompt_n"] + t1["predicted_n"]
        assert t2["prompt_n"] == new + (0 if ended else len(m.tokenizer.encode("\n\n")))
        again = c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 8, "temperature": 0}).json()
        assert again["timings"]["prompt_n"] == 0  # a regenerate processes nothing
        assert again["choices"][0]["message"] == second["choices"][0]["message"]
    finally:
        eng.close()


def test_too_large_bodies_get_413_and_a_full_queue_503(server):
    m, _ = server
    eng = Engine(m, n_parallel=1, max_queue=0)  # not started: nothing leaves the queue
    c = TestClient(App(m, eng, ServerConfig(max_body_bytes=100)))
    r = c.post("/v1/completions", json={"prompt": "x" * 200})
    assert r.status_code == 413 and "over 100 bytes" in r.json()["error"]["message"]
    r = c.post("/v1/completions", json={"prompt": "hi", "max_tokens": 1})
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_overloaded"
    eng.close()


def test_a_restarted_server_resumes_a_chat_with_nothing_reprocessed(server, tmp_path):
    """With --state-cache-dir, turn 2 after a restart (a new engine, cache and app: nothing in
    memory) continues from turn 1's state on disk; the answer comes back as text and is matched
    to the tokens it was generated as."""
    from rwkvfast.server.state_cache import StateCache
    m, _ = server
    msgs = [{"role": "user", "content": "Tell me a story"}]
    eng = Engine(m, cache=StateCache(m, 64 << 20, tmp_path)).start()
    try:
        first = TestClient(App(m, eng, ServerConfig())).post(
            "/v1/chat/completions", json={"messages": msgs, "max_tokens": 12, "temperature": 0}).json()
    finally:
        eng.close()
    msgs += [first["choices"][0]["message"], {"role": "user", "content": "More"}]
    eng = Engine(m, cache=StateCache(m, 64 << 20, tmp_path)).start()
    try:
        second = TestClient(App(m, eng, ServerConfig())).post(
            "/v1/chat/completions", json={"messages": msgs, "max_tokens": 4, "temperature": 0}).json()
    finally:
        eng.close()
    t1, t2 = first["timings"], second["timings"]
    ended = first["choices"][0]["finish_reason"] == "stop"
    new = len(m.tokenizer.encode("User: More\n\n") + m.tokenizer.encode("Assistant:"))
    assert t2["cache_n"] == t1["prompt_n"] + t1["predicted_n"]
    assert t2["prompt_n"] == new + (0 if ended else len(m.tokenizer.encode("\n\n")))


def test_chats_that_share_a_system_prompt_process_it_once(server):
    from rwkvfast.server.state_cache import StateCache
    m, _ = server
    eng = Engine(m, cache=StateCache(m, 64 << 20)).start()
    try:
        c = TestClient(App(m, eng, ServerConfig()))
        system = {"role": "system", "content": "You are a pirate. Answer in one line, always, about the sea."}
        one = c.post("/v1/chat/completions", json={"messages": [system, {"role": "user", "content": "Hi"}],
                                                   "max_tokens": 3}).json()["timings"]
        two = c.post("/v1/chat/completions", json={"messages": [system, {"role": "user", "content": "Ahoy"}],
                                                   "max_tokens": 3}).json()["timings"]
    finally:
        eng.close()
    n_system = len(m.tokenizer.encode(f"System: {system['content']}\n\n"))
    assert one["cache_n"] == 0 and two["cache_n"] == n_system
    assert two["prompt_n"] == len(m.tokenizer.encode("User: Ahoy\n\n") + m.tokenizer.encode("Assistant:"))


_NUMERIC = [("/v1/completions", "max_tokens"), ("/v1/completions", "top_k"), ("/v1/completions", "seed"),
            ("/v1/completions", "n"), ("/completion", "n_predict"), ("/v1/completions", "max_completion_tokens"),
            ("/v1/completions", "temperature"), ("/v1/completions", "top_p")]


@pytest.mark.parametrize("path,field", _NUMERIC)
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_a_400_naming_the_field(server, path, field, value):
    _, c = server
    r = c.post(path, content=f'{{"prompt": "hi", "{field}": {value}}}'.encode(),
               headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert f"'{field}'" in err["message"] and err["type"] == "invalid_request_error" and err["code"] == 400


@pytest.mark.parametrize("path,body,field", [
    ("/v1/completions", '{"prompt": "a\\ud800b"}', "'prompt'"),
    ("/completion", '{"prompt": "\\udfff"}', "'prompt'"),
    ("/v1/completions", '{"prompt": "a", "stop": ["ok", "\\ud800"]}', "'stop[1]'"),
    ("/tokenize", '{"content": "\\ud83d"}', "'content'"),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "x\\udc00"}]}', "'messages[0].content'"),
    ("/v1/completions", '{"prompt": "a", "logit_bias": {"\\ud800": 1}}', r"'logit_bias.\ud800'"),
    ("/v1/chat/completions", '{"messages": [{"role": [], "content": "x"}]}', "'messages[0].role'"),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "x"}, {"role": 7, "content": "y"}]}',
     "'messages[1].role'"),
    ("/v1/chat/completions", '{"messages": ["hi"]}', "'messages[0]'"),
    ("/v1/completions", "[" * 100000, "nested too deeply"),
    ("/v1/completions", '{"prompt": ' + "[" * 100000 + "}", "nested too deeply"),
])
def test_bad_text_and_structure_are_a_400_naming_the_field(server, path, body, field):
    _, c = server
    r = c.post(path, content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]["message"]


def test_a_prompt_over_the_per_request_budget_is_a_400_and_answers_stop_at_it(server):
    m, _ = server
    eng = Engine(m).start()
    try:
        c = TestClient(App(m, eng, ServerConfig(max_tokens_per_request=20)))
        r = c.post("/v1/completions", json={"prompt": "word " * 40, "max_tokens": 1})
        assert r.status_code == 400 and "at most 20 tokens per request" in r.json()["error"]["message"]
        msgs = [{"role": "user", "content": "word " * 10}] * 5
        r = c.post("/v1/chat/completions", json={"messages": msgs})
        assert r.status_code == 400 and "-c/--ctx-size" in r.json()["error"]["message"]
        n_prompt = len(m.tokenizer.encode("Once"))
        r = c.post("/v1/completions", json={"prompt": "Once", "max_tokens": -1, "temperature": 0,
                                            "logit_bias": {"0": -100}}).json()
        assert r["usage"]["completion_tokens"] == 20 - n_prompt and r["choices"][0]["finish_reason"] == "length"
        assert c.get("/props").json()["default_generation_settings"]["n_ctx"] == 20
    finally:
        eng.close()


def test_a_request_the_machine_has_no_memory_for_is_a_503(server):
    from rwkvfast.server.memory import MemoryGuard
    m, _ = server
    free = [10 << 30]
    eng = Engine(m, memory=MemoryGuard(reserve=1 << 30, probe=lambda: free[0])).start()
    try:
        c = TestClient(App(m, eng, ServerConfig()))
        assert c.post("/v1/completions", json={"prompt": "hi", "max_tokens": 1}).status_code == 200
        free[0] = (1 << 30) + (1 << 20)  # just over the reserve: a big body no longer fits
        r = c.post("/v1/completions", json={"prompt": "hi " * 50000, "max_tokens": 1})
        assert r.status_code == 503 and r.json()["error"]["type"] == "server_overloaded"
        assert "short of memory" in r.json()["error"]["message"]
        free[0] = 1 << 30
        r = c.post("/v1/completions", json={"prompt": "hi", "max_tokens": 1})
        assert r.status_code == 503
        free[0] = 10 << 30
        assert c.post("/v1/completions", json={"prompt": "hi", "max_tokens": 1}).status_code == 200
    finally:
        eng.close()


def test_a_chat_of_32000_messages_is_parsed_once_through_the_cache(server):
    """Defect: with the state cache on, each assistant turn re-read the whole prefix (109 s of
    CPU for this request; the linear walk is test_state_cache's, the time bench/test_server.py's)."""
    from rwkvfast.server.state_cache import StateCache
    m, _ = server
    cache = StateCache(m, 64 << 20)
    eng = Engine(m, cache=cache)  # not started: only the request's parsing is under test
    app = App(m, eng, ServerConfig(max_tokens_per_request=0))
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": "hi there"} for i in range(32000)]
    job = app._chat({"messages": msgs, "max_tokens": 1}).job
    enc = m.tokenizer.encode
    want = []
    for i in range(32000):
        want += enc(f"User: hi there\n\n") if i % 2 == 0 else enc("Assistant:") + enc(" hi there\n\n")
    assert job.prompt == want + enc("Assistant:")
    eng.close()


class _Said(Engine):
    """An engine whose every answer is `text` at once (in pieces of 3 characters): the server's
    handling of an answer without a model's whims. The prompts it got are kept."""

    def __init__(self, model, text: str) -> None:
        super().__init__(model)
        self.text, self.prompts = text, []

    def submit(self, prompt, sampler, max_tokens=-1, stop=(), stop_on_eos=True, checkpoints=(), logprobs=None):
        from rwkvfast.server.engine import _DONE, Job
        self.prompts.append(list(prompt))
        job = Job(prompt, sampler, max_tokens, stop, stop_on_eos, checkpoints, logprobs)
        for i in range(0, len(self.text), 3):
            job._put(self.text[i:i + 3])
        job.result.text, job.result.tokens, job.result.finish_reason = self.text, [1], "stop"
        job._put(_DONE)
        job._done.set()
        return job


@pytest.fixture(scope="module")
def seven():
    from conftest import fixture_path
    with rwkvfast.Model(fixture_path("rwkv7/tiny7/gguf/tiny7-Q8_0.gguf"), n_threads=1) as m:
        yield m


def _chat_stream(c, body):
    with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
        lines = [ln for ln in s.iter_lines() if ln.startswith("data: {")]
    deltas = [json.loads(ln[6:])["choices"][0]["delta"] for ln in lines if "choices" in ln]
    return ("".join(d.get("reasoning_content", "") for d in deltas), "".join(d.get("content", "") for d in deltas))


def test_a_g1_answer_comes_back_with_its_reasoning_apart(seven):
    eng = _Said(seven, ">\nThe user says hi.\n</think>\nHello!")
    c = TestClient(App(seven, eng, ServerConfig()))
    body = {"messages": [{"role": "user", "content": "Hi"}]}
    msg = c.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    assert msg == {"role": "assistant", "content": "Hello!", "reasoning_content": "The user says hi."}
    tok = seven.tokenizer
    assert eng.prompts[0] == tok.encode("User: Hi\n\n") + tok.encode("Assistant:") + tok.encode(" <think")
    assert _chat_stream(c, body) == ("The user says hi.", "Hello!")
    # reasoning_format none: the content as the model said it, tags and all
    raw = c.post("/v1/chat/completions", json={**body, "reasoning_format": "none"}).json()
    assert raw["choices"][0]["message"]["content"] == "<think>\nThe user says hi.\n</think>\nHello!"
    assert _chat_stream(c, {**body, "reasoning_format": "none"})[1] == "<think>\nThe user says hi.\n</think>\nHello!"
    assert c.get("/props").json()["reasoning"] == "on"


def test_apply_template_opens_g1_s_reasoning_as_the_chat_would(seven):
    c = TestClient(App(seven, Engine(seven), ServerConfig()))
    msgs = {"messages": [{"role": "user", "content": "Hi"}]}
    assert c.post("/apply-template", json=msgs).json()["prompt"] == "User: Hi\n\nAssistant: <think"
    off = {**msgs, "chat_template_kwargs": {"enable_thinking": False}}
    assert c.post("/apply-template", json=off).json()["prompt"] == "User: Hi\n\nAssistant: <think></think"


@pytest.mark.parametrize("ask", [{"chat_template_kwargs": {"enable_thinking": False}}, {"reasoning_effort": "none"}])
def test_a_request_can_turn_the_reasoning_off(seven, ask):
    eng = _Said(seven, ">\nHello!")
    c = TestClient(App(seven, eng, ServerConfig()))
    msg = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], **ask}).json()
    assert msg["choices"][0]["message"] == {"role": "assistant", "content": "Hello!"}
    assert eng.prompts[0][-len(seven.tokenizer.encode(" <think></think")):] == seven.tokenizer.encode(" <think></think")


@pytest.mark.parametrize("bad,field", [({"reasoning_effort": "max"}, "reasoning_effort"),
                                       ({"chat_template_kwargs": {"enable_thinking": "yes"}}, "enable_thinking"),
                                       ({"chat_template_kwargs": []}, "chat_template_kwargs"),
                                       ({"reasoning_format": "raw"}, "reasoning_format")])
def test_bad_reasoning_options_are_400s(seven, bad, field):
    c = TestClient(App(seven, _Said(seven, "x"), ServerConfig()))
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], **bad})
    assert r.status_code == 400 and field in r.json()["error"]["message"]


def test_rwkv6_answers_have_no_reasoning(server):
    m, _ = server
    eng = _Said(m, " <think>no</think> Hello!")  # a model that never learned the tags: it is all content
    c = TestClient(App(m, eng, ServerConfig()))
    msg = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]}).json()
    assert msg["choices"][0]["message"]["content"] == "<think>no</think> Hello!"
    assert eng.prompts[0][-len(m.tokenizer.encode("Assistant:")):] == m.tokenizer.encode("Assistant:")


def test_a_g1_conversation_resumes_from_its_cache_though_the_reasoning_is_not_sent_back(seven):
    """The client sends an answer back without its reasoning; the state cache still knows the
    tokens it was generated as (reasoning included) and the next turn processes only its own."""
    from rwkvfast.server.state_cache import StateCache
    eng = Engine(seven, cache=StateCache(seven, 64 << 20)).start()
    try:
        c = TestClient(App(seven, eng, ServerConfig()))
        msgs = [{"role": "user", "content": "Tell me"}]
        first = c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 8, "temperature": 0}).json()
        answer = first["choices"][0]["message"]
        msgs += [{"role": "assistant", "content": answer["content"]}, {"role": "user", "content": "More"}]
        second = c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 2, "temperature": 0}).json()
    finally:
        eng.close()
    t1, t2 = first["timings"], second["timings"]
    assert t2["cache_n"] >= t1["prompt_n"] + t1["predicted_n"]


def test_rwkv7_completions_metrics_and_batched_requests_on_the_real_engine(seven):
    """/completion and /v1/completions of an RWKV-7 model are its greedy generation, also when
    several requests share the engine's batch; /metrics counts them."""
    import threading
    eng = Engine(seven, n_parallel=4).start()
    try:
        c = TestClient(App(seven, eng, ServerConfig()))
        prompts = ["Once upon", "The quick brown", "In the beginning", "Hello"]
        want = [_greedy_text(seven, p, 10)[0] for p in prompts]
        before = c.get("/metrics").text
        got = [None] * len(prompts)

        def ask(i):
            got[i] = c.post("/v1/completions", json={"prompt": prompts[i], "max_tokens": 10,
                                                     "temperature": 0}).json()["choices"][0]["text"]
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        native = c.post("/completion", json={"prompt": prompts[0], "n_predict": 10, "temperature": 0}).json()
        after = c.get("/metrics").text
    finally:
        eng.close()
    assert got == want and native["content"] == want[0]

    def value(text, name):
        return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(f"rwkvfast:{name} ")))
    assert value(after, "requests_total") == value(before, "requests_total") + len(prompts) + 1
