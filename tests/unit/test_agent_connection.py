"""An agent keeps its connection to the coordinator between calls.

A busy coordinator accepts new connections slowly (docs/benchmarks/load.md), so an agent
that reconnected for every heartbeat made its own calls, and everyone's, slower.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore._sync.http11 as http11
import pytest

from gpudepin import CLIENT_KEEPALIVE_S, SERVER_KEEPALIVE_S
from gpudepin.client.sdk import agent_http


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn does
    connections = 0

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Counting.connections = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _Clock:
    """httpcore's view of time, moved forward by the test instead of waited for."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead


def _idle_between_calls(url: str, idle_s: float, monkeypatch: pytest.MonkeyPatch) -> int:
    clock = _Clock()
    monkeypatch.setattr(http11, "time", clock)
    with agent_http(url, timeout=10) as http:
        assert http.get("/").text == "ok"
        clock.ahead = idle_s
        assert http.get("/").text == "ok"
    return _Counting.connections


def test_an_agent_idle_between_heartbeats_reuses_its_connection(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a task of 20 s between beats of 10 s: httpx's default (5 s) reconnected every beat
    assert _idle_between_calls(server, 30.0, monkeypatch) == 1


def test_the_agent_lets_go_of_a_connection_before_the_coordinator_does(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CLIENT_KEEPALIVE_S < SERVER_KEEPALIVE_S  # never a request into a closing socket
    assert _idle_between_calls(server, CLIENT_KEEPALIVE_S + 1, monkeypatch) == 2
