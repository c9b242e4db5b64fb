"""The coordinator knows how far behind its requests it runs (speculation pauses on it)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from gpudepin.coordinator.app import Runtime


def test_lag_rises_when_the_loop_is_held_up_and_fades_after() -> None:
    state = SimpleNamespace(lag_s=0.0)

    async def scenario() -> tuple[float, float, float]:
        watcher = asyncio.create_task(Runtime.watch_lag(state, every_s=0.01))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        calm = state.lag_s
        time.sleep(0.3)  # a handler that holds the loop, as an overloaded one does
        await asyncio.sleep(0.005)  # the watcher's overdue sample runs first
        held = state.lag_s
        await asyncio.sleep(0.6)  # sixty samples later
        watcher.cancel()
        return calm, held, state.lag_s

    calm, held, later = asyncio.run(scenario())
    assert calm < 0.1
    assert held >= 0.2
    assert later < held / 2
