"""``db.transaction``: a transaction PostgreSQL aborts to end a deadlock runs again and
commits; any other error reaches the caller at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from gpudepin.coordinator import db


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    eng = db.make_engine(pg_url)
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE pair (id INT PRIMARY KEY, hits INT NOT NULL)"))
        conn.execute(text("INSERT INTO pair VALUES (1, 0), (2, 0)"))
    yield eng
    eng.dispose()


def test_both_sides_of_a_deadlock_commit(engine: Engine) -> None:
    both_hold_one = threading.Barrier(2, timeout=30)
    runs: list[int] = []

    def crossing(first: int, second: int) -> None:
        def work(conn: Connection) -> None:
            runs.append(first)
            conn.execute(text("UPDATE pair SET hits = hits + 1 WHERE id = :i"), {"i": first})
            if runs.count(first) == 1:  # the first try meets the other holding its row
                both_hold_one.wait()
            conn.execute(text("UPDATE pair SET hits = hits + 1 WHERE id = :i"), {"i": second})

        db.transaction(engine, work)

    threads = [threading.Thread(target=crossing, args=p) for p in ((1, 2), (2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(runs) >= 3  # PostgreSQL aborted one side; it ran again
    with engine.connect() as conn:
        hits = dict(conn.execute(text("SELECT id, hits FROM pair")).all())
    assert hits == {1: 2, 2: 2}  # each side's two updates, none lost, none doubled


def test_other_errors_are_not_retried(engine: Engine) -> None:
    runs = []

    def clash(conn: Connection) -> None:
        runs.append(1)
        conn.execute(text("INSERT INTO pair VALUES (1, 0)"))

    with pytest.raises(IntegrityError):
        db.transaction(engine, clash)
    assert runs == [1]
