"""What a connection may hold (rwkvfast/server/connections.py and the body deadline in app.py),
against a live rwkvfast-server on 127.0.0.1 with small limits: raw sockets play the slow,
idle and non-reading clients, and a normal client must still get its answers."""
from __future__ import annotations

import http.client
import json
import socket
import time

import httpx
import pytest

from conftest import live_server
from rwkvfast.testing import make_model

LIMITS = ("--max-connections", "8", "--header-timeout", "1", "--body-timeout", "1", "--timeout", "2",
          "--keep-alive", "30", "-t", "1")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = make_model(tmp_path_factory.mktemp("conn") / "m.gguf", n_layer=2, n_embd=64, vocab=300, head_size=32)
    with live_server(path, *LIMITS, "-c", "0") as (url, p):
        yield url, int(url.rsplit(":", 1)[1])


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    return s


def _read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout is the
    test's deadline: a server that never closes fails the test)."""
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def _answer(url: str) -> dict:
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "Hello", "max_tokens": 3, "temperature": 0}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_connection_that_sends_nothing_or_half_a_head_is_closed(server):
    url, port = server
    silent, slow = _connect(port), _connect(port)
    slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # and then nothing more
    t0 = time.monotonic()
    assert _read_all(silent) == b"" and _read_all(slow) == b""  # closed without an answer
    assert time.monotonic() - t0 < 10  # by the head deadline (1 s), not by the socket's 15 s timeout
    _answer(url)


def test_half_a_head_on_a_kept_alive_connection_is_closed_by_the_head_deadline(server):
    url, port = server
    s = _connect(port)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = b""
    while b'{"status":"ok"}' not in reply:
        reply += s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200 ")  # kept alive (--keep-alive 30)
    s.sendall(b"GET /health HTTP/1.1\r\n")  # the next request, cut off
    t0 = time.monotonic()
    assert _read_all(s) == b""
    assert time.monotonic() - t0 < 10  # the head deadline (1 s), not the keep-alive (30 s)


def test_idle_connections_at_the_limit_never_lock_out_a_new_client(server):
    url, port = server
    idle = [_connect(port) for _ in range(30)]  # far over --max-connections 8, all silent
    try:
        for _ in range(3):
            _answer(url)  # each new client closes the longest-idle connection
        closed = 0
        for s in idle:
            s.settimeout(15)
            closed += _read_all(s) == b""
        assert closed == len(idle)
    finally:
        for s in idle:
            s.close()


def test_a_body_that_does_not_arrive_gets_408_and_the_connection_closes(server):
    url, port = server
    s = _connect(port)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 100\r\n\r\n{\"prompt\": ")
    reply = _read_all(s)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert "did not arrive within 1 s" in body["error"]["message"] and body["error"]["code"] == 408
    _answer(url)


def test_when_every_connection_is_busy_a_newcomer_gets_503(tmp_path):
    path = make_model(tmp_path / "m.gguf", n_layer=1, n_embd=64, vocab=300, head_size=32)
    with live_server(path, "--max-connections", "2", "--body-timeout", "30", "-t", "1") as (url, p):
        port = int(url.rsplit(":", 1)[1])
        busy = []
        for _ in range(2):  # requests in progress: heads read, bodies still to come
            s = _connect(port)
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n"
                      b"Expect: 100-continue\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 100 ")  # the handler is reading the body
            busy.append(s)
        late = _connect(port)
        reply = _read_all(late)
        assert reply.startswith(b"HTTP/1.1 503 "), reply[:200]
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "server_overloaded"
        for s in busy:
            s.close()


def test_a_client_that_stops_reading_is_dropped_and_its_slot_freed(server):
    url, port = server
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(60)
    s.connect(("127.0.0.1", port))
    body = json.dumps({"prompt": "Hi", "max_tokens": -1, "stream": True, "logit_bias": {"0": -100}}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    # never read: the server's buffers fill, writing stalls, and after --timeout 2 s it hangs up
    deadline = time.monotonic() + 120
    while _metric(url, "requests_processing") != 0:
        assert time.monotonic() < deadline, "a client that never reads kept its slot"
        time.sleep(0.1)
    s.close()
    _answer(url)


def test_bad_requests_get_400s_and_the_connection_stays_usable(server):
    url, port = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    bad = ['{"prompt": "hi", "max_tokens": NaN}', '{"prompt": "hi", "temperature": Infinity}',
           '{"prompt": "\\ud800"}', "[" * 100000, '{"messages": [{"role": [], "content": "x"}]}']
    paths = ["/v1/completions"] * 4 + ["/v1/chat/completions"]
    sock = None
    for path, body in zip(paths, bad):
        conn.request("POST", path, body=body.encode(), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        err = json.loads(r.read())["error"]
        assert r.status == 400 and err["code"] == 400 and err["type"] == "invalid_request_error", err
        sock = sock or conn.sock
        assert conn.sock is sock  # the same connection, kept alive
    conn.request("POST", "/v1/completions", body=json.dumps({"prompt": "Hello", "max_tokens": 2}).encode(),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["object"] == "text_completion" and conn.sock is sock
    conn.close()


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(f"rwkvfast:{name} ")))
