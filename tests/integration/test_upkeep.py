"""Table statistics on PostgreSQL: where the server's autovacuum would not gather them,
the coordinator does, so the planner stops taking a full queue for an empty table."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from sqlalchemy import text

from gpudepin.client import Client
from gpudepin.coordinator import upkeep
from gpudepin.coordinator.app import Runtime, create_app
from gpudepin.settings import CoordinatorSettings

TASKS = 300


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def _net(db_url: str | None, clock: Clock) -> Iterator[Runtime]:
    settings = CoordinatorSettings(home=Path(tempfile.mkdtemp()), db_url=db_url)
    with TestClient(create_app(settings, run_loops=False, clock=clock)) as tc:
        http = TestClient(tc.app, base_url="http://testserver/v1")
        buyer = Client("http://testserver", Account.create(), http=http)
        buyer.faucet("100")
        buyer.submit_job("echo", {"tasks": TASKS, "seed": 1}, {}, "0.0001")
        rt = tc.app.state.rt  # type: ignore[attr-defined]
        if rt.engine.dialect.name == "postgresql":
            _flush_stats(rt)
        yield rt


def _flush_stats(rt: Runtime) -> None:
    """Have every pooled connection's server process publish its pending table
    statistics now: a process publishes them at most once a second, so what the job's
    inserts did could otherwise show in ``pg_stat_user_tables`` only later."""
    conns = [
        rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        for _ in range(rt.engine.pool.checkedin())  # type: ignore[attr-defined]
    ]
    for conn in conns:  # published before the server answers (PostgreSQL >= 15)
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
        conn.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pg(pg_url: str, clock: Clock) -> Iterator[Runtime]:
    yield from _net(pg_url, clock)


def _planned_rows(rt: Runtime, table: str) -> float:
    """How many rows the planner believes ``table`` holds (-1: never analyzed)."""
    with rt.engine.connect() as conn:
        q = text("SELECT reltuples FROM pg_class WHERE relname = :t")
        return float(conn.execute(q, {"t": table}).scalar_one())


def _duty(rt: Runtime) -> None:
    """One call of the duty, and its pass (in a thread of its own) waited for."""
    upkeep.statistics_duty(rt)
    worker = rt.caches["upkeep"]["worker"]
    if worker is not None:
        worker.join(timeout=60)


def test_a_queue_that_grew_from_empty_is_analyzed_once_and_then_left_alone(pg: Runtime) -> None:
    with pg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        first = upkeep.look_after(conn)
        again = upkeep.look_after(conn)
    assert "ANALYZE tasks" in first and "ANALYZE jobs" in first
    assert _planned_rows(pg, "tasks") == TASKS  # the planner now knows the queue
    assert again == []  # nothing changed since: nothing to do


def test_the_duty_runs_only_where_autovacuum_is_off_and_at_most_every_ten_seconds(
    pg: Runtime, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upkeep, "autovacuum_on", lambda conn: True)
    _duty(pg)
    assert _planned_rows(pg, "tasks") == -1  # the server's own autovacuum is trusted

    pg.caches.pop("upkeep")
    monkeypatch.setattr(upkeep, "autovacuum_on", lambda conn: False)
    ran: list[list[str]] = []
    real = upkeep.look_after
    monkeypatch.setattr(upkeep, "look_after", lambda conn: ran.append(real(conn)) or ran[-1])
    _duty(pg)
    assert _planned_rows(pg, "tasks") == TASKS
    clock.t += upkeep.CHECK_EVERY_S / 2
    _duty(pg)
    clock.t += upkeep.CHECK_EVERY_S
    _duty(pg)
    assert len(ran) == 2  # the call in between was too soon


def test_a_second_coordinator_leaves_the_upkeep_to_the_one_at_it(pg: Runtime) -> None:
    with pg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as other:
        other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": upkeep._LOCK_KEY})
        with pg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            assert upkeep.look_after(conn) == []
        other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": upkeep._LOCK_KEY})
    assert _planned_rows(pg, "tasks") == -1


def test_sqlite_needs_no_upkeep(tmp_path: Path, clock: Clock) -> None:
    for rt in _net(f"sqlite:///{tmp_path}/c.db", clock):
        upkeep.statistics_duty(rt)
        assert "upkeep" not in rt.caches  # no pass started


@pytest.mark.parametrize(
    ("live", "dead", "modified", "never", "needed"),
    [
        (0, 0, 0, True, None),  # empty and untouched
        (0, 0, 3, True, "ANALYZE"),  # never analyzed: planned as empty, though it is not
        (1000, 0, 140, False, None),  # under 50 + 10%
        (1000, 0, 160, False, "ANALYZE"),
        (1000, 260, 260, False, "VACUUM (ANALYZE)"),  # over 50 + 20% dead
    ],
)
def test_thresholds_are_autovacuums_defaults(
    live: int, dead: int, modified: int, never: bool, needed: str | None
) -> None:
    assert upkeep.upkeep_for(live, dead, modified, never) == needed
