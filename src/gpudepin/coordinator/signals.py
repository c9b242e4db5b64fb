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
        # (loop, future, how many tasks the waiter would take)
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], int]] = deque()
        self.generation = 0

    def notify(self, n: int | None = None) -> None:
        """Wake, oldest first, enough waiters to take ``n`` new tasks (all when None).

        Waking only as many polls as the new work can keep busy spares the rest a claim
        that would find nothing; work a woken poll cannot take (residency, say) is found
        by the next poll of an agent that can.
        """
        woken = []
        with self._lock:
            self.generation += 1
            want = len(self._waiters) if n is None else n
            while self._waiters and want > 0:
                entry = self._waiters.popleft()
                woken.append(entry)
                want -= 1 if n is None else entry[2]
        for loop, fut, _ in woken:
            loop.call_soon_threadsafe(_resolve, fut)

    async def wait(self, generation: int, timeout: float, takes: int = 1) -> bool:
        """Wait to be notified (True), at most ``timeout`` s (False); True at once if
        ``generation`` is no longer current (something was announced meanwhile).
        ``takes`` is how many tasks this waiter would claim when woken."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut, takes)
        with self._lock:
            if self.generation != generation:
                return True
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
