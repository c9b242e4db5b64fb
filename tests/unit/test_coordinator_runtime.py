"""The coordinator's runtime: how far behind its requests it runs (speculation pauses on
it), and where its short database calls run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine

from gpudepin.coordinator.app import Runtime
from gpudepin.coordinator.blobs import BlobStore
from gpudepin.settings import CoordinatorSettings


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


@pytest.mark.parametrize(
    ("url", "inline"),
    [
        ("sqlite:///{home}/x.db", True),  # in this process
        ("postgresql+psycopg://u@127.0.0.1:5432/x", False),  # commits wait for a WAL flush
        ("postgresql+psycopg://u@db.example.com/x", False),
    ],
)
def test_short_database_calls_run_on_the_loop_only_on_sqlite_unless_told(
    tmp_path: Path, url: str, inline: bool
) -> None:
    url = url.format(home=tmp_path)
    blobs = BlobStore(tmp_path / "blobs", 1024)
    rt = Runtime(CoordinatorSettings(home=tmp_path, db_url=url), create_engine(url), blobs)
    assert rt.inline_db is inline
    # elsewhere they have threads of their own, not the pool that runs blocking endpoints
    assert (rt.db_threads is None) is inline
    forced = CoordinatorSettings(home=tmp_path, db_url=url, inline_db=not inline)
    other = Runtime(forced, create_engine(url), blobs)
    assert other.inline_db is (not inline)
    assert (other.db_threads is None) is (not inline)
    for pool in (rt.db_threads, other.db_threads):
        if pool is not None:
            pool.shutdown()
