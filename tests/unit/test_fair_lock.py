"""SQLite's writer lock goes to writers in the order they asked for it.

The event loop's quick writes release the lock and ask again at once; with a plain lock
they kept winning it, and a job written from the thread pool waited until it timed out.
"""

from __future__ import annotations

import threading
import time

from gpudepin.coordinator.db import FairLock


def _wait_for_waiters(lock: FairLock, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(lock._waiters) < n:  # the other thread has queued up
        assert time.monotonic() < deadline, "the waiter never queued"
        time.sleep(0.001)


def test_a_waiting_writer_goes_before_the_holder_asking_again() -> None:
    lock, order = FairLock(), []
    assert lock.acquire(timeout=1)

    def waiter() -> None:
        assert lock.acquire(timeout=10)
        order.append("waiter")
        lock.release()

    t = threading.Thread(target=waiter)
    t.start()
    _wait_for_waiters(lock, 1)
    lock.release()
    assert lock.acquire(timeout=10)  # asked again at once: it comes after the waiter
    order.append("holder")
    lock.release()
    t.join(10)
    assert order == ["waiter", "holder"]


def test_waiters_are_served_in_the_order_they_came() -> None:
    lock, order = FairLock(), []
    assert lock.acquire(timeout=1)

    def waiter(i: int) -> None:
        assert lock.acquire(timeout=10)
        order.append(i)
        lock.release()

    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=waiter, args=(i,)))
        threads[-1].start()
        _wait_for_waiters(lock, i + 1)
    lock.release()
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3, 4]


def test_a_wait_that_times_out_gives_up_its_turn() -> None:
    lock = FairLock()
    assert lock.acquire(timeout=1)
    assert not lock.acquire(timeout=0.05)
    lock.release()
    assert lock.acquire(timeout=0)  # free again: not handed to the waiter that left
    lock.release()
