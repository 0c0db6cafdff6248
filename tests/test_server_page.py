"""The chat page of rwkvfast-server in headless Chromium, driven by Playwright.

Needs Debian's `chromium` (or $RWKVFAST_CHROMIUM) and the playwright test extra; skips without
them unless $RWKVFAST_REQUIRE_BROWSER is set (CI sets it, so there the page is always tested).
Screenshots go to $RWKVFAST_ARTIFACTS (default test-artifacts/).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

import rwkvfast

from conftest import ROOT, live_server
from rwkvfast.testing import make_model

ARTIFACTS = Path(os.environ.get("RWKVFAST_ARTIFACTS", ROOT / "test-artifacts"))
KEY = "p4ge-key"


def _browser_or_skip():
    exe = os.environ.get("RWKVFAST_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if exe and sync_playwright:
        return exe, sync_playwright
    why = "no chromium found" if not exe else "playwright is not installed"
    if os.environ.get("RWKVFAST_REQUIRE_BROWSER"):
        pytest.fail(f"$RWKVFAST_REQUIRE_BROWSER is set but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("page") / "m.gguf", n_layer=2, n_embd=64, vocab=300, head_size=32)


@pytest.fixture(scope="module")
def server(model_path):
    with live_server(model_path, "-t", "1", "-np", "2", "--api-key", KEY) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    exe, sync_playwright = _browser_or_skip()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1100, "height": 760})
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    pg.requests = []  # every URL the page asks for: all must be this server's
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    ctx.close()
    assert not pg.errors, pg.errors
    assert all(u.startswith(server + "/") for u in pg.requests), pg.requests


def _stored(pg) -> dict:
    return json.loads(pg.evaluate("localStorage.getItem('rwkvfast.chat.v1')"))


def _endless(pg, model_path):
    """Make the page's chat requests unable to end by themselves (no end-of-text token, no
    newline for the turn's end), so only a stop can end them."""
    with rwkvfast.Model(str(model_path)) as m:
        bias = {str(i): -100 for i in range(m.n_vocab) if i == 0 or "\n" in m.tokenizer.decode([i])}

    def route(r):
        body = json.loads(r.request.post_data)
        r.continue_(post_data=json.dumps({**body, "logit_bias": bias, "max_tokens": 100000}))

    pg.route("**/v1/chat/completions", route)


def _processing(server) -> float:
    text = httpx.get(f"{server}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).text
    return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith("rwkvfast:requests_processing ")))


def test_chat_with_the_keyboard_only_streams_stops_and_is_kept(page, server, model_path):
    pg = page
    pg.goto(server + "/")
    assert "API key" in pg.locator("#banner").inner_text()  # the server wants a key and the page says so
    # settings, by keyboard: the key, greedy sampling and a short answer
    pg.focus("#gear")
    pg.keyboard.press("Enter")
    assert pg.locator("#settings").is_visible()
    for field, value in (("#s-temperature", "0"), ("#s-max_tokens", "12"), ("#s-api_key", KEY)):
        pg.focus(field)
        pg.keyboard.press("Control+A")
        pg.keyboard.type(value)
    pg.keyboard.press("Enter")  # submits the dialog's form: Save
    assert not pg.locator("#settings").is_visible()
    pg.wait_for_function("() => document.getElementById('model').textContent === 'm.gguf'")
    assert not pg.locator("#banner").is_visible()

    # Shift+Enter is a new line, Enter sends
    pg.focus("#input")
    pg.keyboard.type("Hello")
    pg.keyboard.press("Shift+Enter")
    pg.keyboard.type("there")
    assert pg.input_value("#input") == "Hello\nthere" and pg.locator(".msg").count() == 0
    pg.keyboard.press("Enter")
    pg.wait_for_function("() => document.querySelector('.msg.assistant .stats')?.textContent.includes('t/s')")
    assert pg.input_value("#input") == "" and pg.evaluate("document.activeElement.id") == "input"
    answer = _stored(pg)["conversations"][0]["messages"][1]
    assert answer["role"] == "assistant" and answer["stats"]["predicted_n"] == 12
    assert answer["stats"]["cache_n"] == 0 and answer["stats"]["predicted_per_second"] > 0
    assert pg.locator("#speed").inner_text().endswith("t/s")
    # what the page shows is what the API answers for the same conversation
    api = httpx.post(f"{server}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                     json={"messages": [{"role": "user", "content": "Hello\nthere"}], "temperature": 0,
                           "max_tokens": 12, "top_p": 0.3, "presence_penalty": 0.5, "frequency_penalty": 0.5})
    assert answer["content"] == api.json()["choices"][0]["message"]["content"]

    # regenerate reuses the cached prompt state: nothing is processed again
    pg.click("#regen")
    pg.wait_for_function("() => document.getElementById('regen') !== null")
    again = _stored(pg)["conversations"][0]["messages"]
    assert len(again) == 2 and again[1]["content"] == answer["content"]
    assert again[1]["stats"]["prompt_n"] == 0 and again[1]["stats"]["cache_n"] > 0

    # a generation that cannot end by itself is shown as it grows; Stop ends it and frees its slot
    _endless(pg, model_path)
    pg.keyboard.type("Tell me more")
    pg.keyboard.press("Enter")
    shown = "() => document.querySelectorAll('.msg.assistant')[1]?.querySelector('.body').textContent.length"
    pg.wait_for_function(f"() => ({shown})() > 5")
    first = pg.evaluate(shown)
    pg.wait_for_function(f"() => ({shown})() > {first} + 20")
    assert pg.inner_text("#send") == "Stop"  # it grew while still generating: streamed
    pg.click("#send")
    pg.wait_for_function("() => document.getElementById('send').textContent === 'Send'")
    stopped = _stored(pg)["conversations"][0]["messages"][-1]
    assert stopped["stats"]["stopped"] and 0 < stopped["stats"]["predicted_n"] < 100000
    assert "stopped" in pg.locator(".msg.assistant .stats").nth(1).inner_text()
    deadline = time.monotonic() + 30
    while _processing(server) != 0:
        assert time.monotonic() < deadline, "the stopped generation kept its slot"
        time.sleep(0.05)

    # Esc stops too
    pg.keyboard.type("And more")
    pg.keyboard.press("Enter")
    pg.wait_for_function("() => document.querySelectorAll('.msg.assistant')[2]?.querySelector('.body').textContent.length > 5")
    pg.keyboard.press("Escape")
    pg.wait_for_function("() => document.getElementById('send').textContent === 'Send'")
    pg.unroute("**/v1/chat/completions")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "chat-page.png"), full_page=True)

    # kept in localStorage: a reload shows the same conversation
    n_before = pg.locator(".msg").count()
    pg.reload()
    pg.wait_for_selector(".msg.assistant")
    assert pg.locator(".msg").count() == n_before == 6
    assert pg.locator("#convs li").count() == 1
    assert pg.locator("#convs .open").first.inner_text() == "Hello"

    # a new conversation (Ctrl+Shift+O) starts empty; the old one stays in the list and reopens
    pg.keyboard.press("Control+Shift+O")
    assert pg.locator(".msg").count() == 0 and pg.locator("#convs li").count() == 2
    pg.locator("#convs .open").nth(1).click()
    assert pg.locator(".msg").count() == 6
    pg.click("#clear")
    assert pg.locator(".msg").count() == 0 and _stored(pg)["conversations"][1]["messages"] == []


def test_a_phone_width_screen_has_no_sideways_scroll(browser, server):
    ctx = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    pg = ctx.new_page()
    pg.goto(server + "/")
    pg.evaluate("""k => { const s = {conversations: [{id: 'a', title: 'Long', messages: [
        {role: 'user', content: 'A fairly long question that has to wrap on a narrow screen, ' + 'word '.repeat(30)},
        {role: 'assistant', content: 'Code:\\n```python\\nprint(' + '"x", '.repeat(40) + ')\\n```\\n' +
                                     'and an unbroken ' + 'y'.repeat(200), stats: {predicted_n: 40, predicted_per_second: 12.5}}]}],
        current: 'a', settings: {api_key: k}}; localStorage.setItem('rwkvfast.chat.v1', JSON.stringify(s)); }""", KEY)
    pg.reload()
    pg.wait_for_selector(".msg.assistant pre")
    assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert pg.locator("#composer").bounding_box()["width"] <= 375
    assert not pg.locator("#side").is_visible() or pg.locator("#side").bounding_box()["x"] < 0  # off-canvas
    pg.click("#menu")
    pg.wait_for_function("() => document.getElementById('side').getBoundingClientRect().x >= 0")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "chat-page-phone-menu.png"))
    pg.keyboard.press("Escape")
    pg.wait_for_function("() => document.getElementById('side').getBoundingClientRect().right <= 0")
    pg.screenshot(path=str(ARTIFACTS / "chat-page-phone.png"))
    ctx.close()


@pytest.mark.parametrize("src,html", [
    ("Hello **bold** and *it* and `a<b`", "<p>Hello <strong>bold</strong> and <em>it</em> and <code>a&lt;b</code></p>"),
    ("```py\nx = 1 < 2\n```", '<pre><div class="codehead"><span>py</span><button type="button" class="copy">Copy</button>'
                              "</div><code>x = 1 &lt; 2</code></pre>"),
    ("```\nstill streaming", '<pre><div class="codehead"><span></span><button type="button" class="copy">Copy</button>'
                             "</div><code>still streaming</code></pre>"),
    ("# Title\n- one\n- two\n\n1. first", "<h1>Title</h1><ul><li>one</li><li>two</li></ul><ol><li>first</li></ol>"),
    ("line one\nline two\n\n> quoted", "<p>line one<br>line two</p><blockquote><p>quoted</p></blockquote>"),
    ("<script>alert(1)</script><img src=x onerror=alert(1)>",
     "<p>&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;</p>"),
    ("[ok](https://example.org/a) [bad](javascript:alert(1))",
     '<p><a href="https://example.org/a" target="_blank" rel="noopener noreferrer">ok</a> [bad](javascript:alert(1))</p>'),
    ("snake_case_name and 2*3*4", "<p>snake_case_name and 2*3*4</p>"),
])
def test_markdown_rendering(page, server, src, html):
    page.goto(server + "/")
    assert page.evaluate("s => window.rwkvfast.md(s)", src) == html


def test_a_g1_models_reasoning_is_shown_collapsed_above_the_answer(browser):
    """Against a live server of the RWKV-7 fixture: the reasoning streams into a collapsed
    "Thinking…" block that becomes "Thought" when the answer comes; the history sent back holds
    the answer only. A canned stream checks the split; the real model checks the wiring."""
    from conftest import fixture_path
    with live_server(fixture_path("rwkv7/tiny7/gguf/tiny7-Q8_0.gguf"), "-t", "1") as (url, _):
        ctx = browser.new_context(viewport={"width": 1100, "height": 760})
        pg = ctx.new_page()
        pg.set_default_timeout(30_000)
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(url + "/")
        pg.evaluate("localStorage.setItem('rwkvfast.chat.v1', JSON.stringify({conversations: [], current: null, "
                    "settings: {temperature: '0', max_tokens: '8', system: '', api_key: ''}}))")
        pg.reload()
        pg.fill("#input", "Hi")
        pg.keyboard.press("Enter")
        pg.wait_for_function("() => document.getElementById('send').textContent === 'Send'")
        real = _stored(pg)["conversations"][0]["messages"][1]
        assert real["reasoning"] and pg.locator(".msg.assistant details.think").count() == 1

        sent = []

        def canned(r):
            sent.append(json.loads(r.request.post_data))
            deltas = [{"role": "assistant", "content": ""}, {"reasoning_content": "The user "},
                      {"reasoning_content": "greets me."}, {"content": "Hello"}, {"content": " there!"}]
            events = "".join(f"data: {json.dumps({'choices': [{'index': 0, 'delta': d}]})}\n\n" for d in deltas)
            r.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=events + "data: [DONE]\n\n")

        pg.route("**/v1/chat/completions", canned)
        pg.fill("#input", "Hello?")
        pg.keyboard.press("Enter")
        pg.wait_for_function("() => document.querySelectorAll('.msg.assistant').length === 2 && "
                             "document.getElementById('send').textContent === 'Send'")
        last = pg.locator(".msg.assistant").nth(1)
        think = last.locator("details.think")
        assert think.get_attribute("open") is None  # collapsed
        assert think.locator("summary").inner_text() == "Thought"
        assert think.locator(".reasoning").text_content() == "The user greets me."  # there, not shown
        assert last.locator(".body").inner_text() == "Hello there!"
        think.locator("summary").click()
        assert think.get_attribute("open") is not None and think.locator(".reasoning").inner_text() == \
            "The user greets me."
        assert sent[0]["messages"][1] == {"role": "assistant", "content": real["content"]} or not real["content"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "chat-page-reasoning.png"), full_page=True)
        pg.reload()
        assert pg.locator(".msg.assistant details.think").count() == 2  # kept with the conversation
        ctx.close()
        assert not errors, errors
