"""The coordinator's event loop: uvloop, except that it takes every waiting connection at once.

libuv, under uvloop, takes one new connection from the listening socket per turn of the
event loop. A turn of a busy coordinator lasts up to a second, so when hundreds of agents
connected at once (after a network blip, or a pool's connections expired while idle)
they waited in the kernel's accept queue for tens of seconds and timed out: the load
benchmark saw 900 queued and taken at about one a second (docs/benchmarks/load.md).
Here the listening socket is read by the loop like any other file descriptor and each
readiness takes every connection waiting, as asyncio's own loop does; the connections
themselves are then served by uvloop as usual.

uvicorn builds its loop with ``loop="gpudepin.coordinator.serving:EagerAcceptLoop"``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvloop

log = logging.getLogger("gpudepin.serving")

# taken from the queue per readiness at most, so that one flood cannot hold a turn
ACCEPT_PER_TURN = 4096
# when the process is out of file descriptors the socket stays readable: look again later
EMFILE_PAUSE_S = 0.1


class EagerListener:
    """A listening socket whose waiting connections are all accepted at each readiness;
    what ``create_server`` returns (uvicorn closes it at shutdown)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Callable[[], Any]
    ) -> None:
        self.loop, self.sock, self.factory = loop, sock, factory
        self.sockets = [sock]
        self._serving = True
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self.accept_waiting)

    def accept_waiting(self) -> None:
        """Accept every connection the kernel holds for us and hand each to the loop."""
        for _ in range(ACCEPT_PER_TURN):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:  # the client gave up meanwhile
                    continue
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept connections (%s): pausing", exc)
                    self.loop.remove_reader(self.sock.fileno())
                    self.loop.call_later(EMFILE_PAUSE_S, self._resume)
                    return
                raise
            conn.setblocking(False)
            # small answers go out at once, as uvloop's own accepted sockets do
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.loop.create_task(self._serve(conn))

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn)
        except OSError:  # the peer reset it before it was set up: nothing to serve
            conn.close()

    def _resume(self) -> None:
        if self._serving:
            self.loop.add_reader(self.sock.fileno(), self.accept_waiting)

    def is_serving(self) -> bool:
        return self._serving

    def close(self) -> None:
        if self._serving:
            self._serving = False
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    async def wait_closed(self) -> None:
        return None


class EagerAcceptLoop(uvloop.Loop):
    """uvloop whose plain TCP servers accept with ``EagerListener``; anything else (TLS,
    Unix sockets, other options) is served by uvloop's own ``create_server``."""

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], Any],
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        backlog: int = 2048,
        ssl: Any = None,
        **kwargs: Any,
    ) -> Any:
        plain = ssl is None and not kwargs and (sock is not None or host is not None)
        if sock is not None and sock.family not in (socket.AF_INET, socket.AF_INET6):
            plain = False
        if not plain:
            given = {"host": host, "port": port, "sock": sock}
            kwargs.update((k, v) for k, v in given.items() if v is not None)
            return await super().create_server(protocol_factory, backlog=backlog, ssl=ssl, **kwargs)
        if sock is None:
            family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
            sock = socket.create_server((host or "", port or 0), family=family, backlog=backlog)
        else:
            sock.listen(backlog)
        return EagerListener(self, sock, protocol_factory)
