"""Waking long-polling requests when work may have appeared.

Handlers that create work run in worker threads; long polls wait on the event loop
without holding a thread, so a thousand idle agents cost no threads and no queries.
A generation counter closes the race between "I found nothing" and "I wait": a waiter
passes the generation it read before looking, and returns at once if it has moved.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque


class WorkSignal:
    """A wake-up for long polls, notified from any thread, awaited on an event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self.generation = 0

    def notify(self, n: int | None = None) -> None:
        """Wake ``n`` waiters, oldest first (all when ``n`` is None).

        Waking only as many polls as there are new tasks spares the rest a claim
        that would find nothing; a woken poll that cannot take the work (residency,
        say) finds it on its next re-check instead.
        """
        with self._lock:
            self.generation += 1
            k = len(self._waiters) if n is None else min(n, len(self._waiters))
            woken = [self._waiters.popleft() for _ in range(k)]
        for loop, fut in woken:
            loop.call_soon_threadsafe(_resolve, fut)

    async def wait(self, generation: int, timeout: float) -> None:
        """Return when notified, after ``timeout`` s, or at once if ``generation`` is old."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut)
        with self._lock:
            if self.generation != generation:
                return
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
