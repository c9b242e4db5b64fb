"""The coordinator's event loop takes every waiting connection at once.

uvloop took one per turn of its loop; a busy coordinator's turn lasts up to a second, so a
thousand agents connecting at once waited in the kernel's queue until they timed out
(docs/benchmarks/load.md).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

pytest.importorskip("uvloop")

from gpudepin.cli.network import _event_loop
from gpudepin.coordinator.serving import EagerAcceptLoop

WAITING = 200


class _Counted(asyncio.Protocol):
    made = 0

    def connection_made(self, transport: Any) -> None:
        type(self).made += 1


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = EagerAcceptLoop()
    yield lp
    lp.close()


def test_every_connection_waiting_is_served_within_a_few_turns(
    loop: asyncio.AbstractEventLoop,
) -> None:
    _Counted.made = 0
    server = loop.run_until_complete(
        loop.create_server(_Counted, "127.0.0.1", 0, backlog=WAITING * 2)
    )
    port = server.sockets[0].getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(WAITING)]
    try:  # the handshakes are done by the kernel: all of them wait to be accepted
        for _ in range(5):  # a few turns of the loop (uvloop's own took one a turn)
            loop.run_until_complete(asyncio.sleep(0))
        assert _Counted.made == WAITING
    finally:
        for c in clients:
            c.close()
        server.close()


def test_closing_the_server_stops_accepting(loop: asyncio.AbstractEventLoop) -> None:
    server = loop.run_until_complete(loop.create_server(_Counted, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    assert server.is_serving()
    server.close()
    loop.run_until_complete(server.wait_closed())
    assert not server.is_serving()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def test_the_coordinator_serves_http_on_it() -> None:
    config = uvicorn.Config(_hello, host="127.0.0.1", port=0, loop=_event_loop(), log_level="error")
    assert config.get_loop_factory() is EagerAcceptLoop
    server = uvicorn.Server(config)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            answers = [http.get("/").text for _ in range(3)]  # one kept-alive connection
        assert answers == ["hello"] * 3
    finally:
        server.should_exit = True
        thread.join(20)
    assert not thread.is_alive()
