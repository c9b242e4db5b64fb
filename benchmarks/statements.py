"""What building a statement per call costs, against running one built once.

A result's path runs a dozen short statements. SQLAlchemy derives a cache key from every
statement it is handed, so one built per call (``select(...).where(col.in_(ids))``) pays
for its construction and that key on top of running it; one built once with
``bindparam(..., expanding=True)`` pays for neither. This times the hot path's reads both
ways, side by side, on SQLite and on PostgreSQL:

    python3 benchmarks/statements.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _pg import scratch_database
from sqlalchemy import Engine, func, select

from gpudepin.coordinator import db, results, service, speculation, store, verification
from gpudepin.coordinator import tables_verification as tv
from gpudepin.coordinator.tables_enterprise import task_copies
from gpudepin.core.jobs import TaskState

IDS = ["j1-00001"]  # a single result's task, as the steady window hands them in
WHO = "0x" + "ab" * 20


def per_call() -> dict[str, Callable[[Any], Any]]:
    """The statements as built on every call before 2026-12-03."""
    t = db.tasks.c
    return {
        "assigned tasks": lambda c: c.execute(
            select(db.tasks).where(
                t.id.in_(IDS), t.provider == WHO, t.state == TaskState.ASSIGNED.value
            )
        ).all(),
        "jobs by id": lambda c: c.execute(select(db.jobs).where(db.jobs.c.id.in_(["j1"]))).all(),
        "racing copies": lambda c: c.execute(
            select(task_copies.c.task_id).where(
                task_copies.c.task_id.in_(IDS), task_copies.c.state.in_(speculation.ACTIVE)
            )
        ).all(),
        "case rounds": lambda c: c.execute(
            select(tv.cases.c.task_id, func.count())
            .where(tv.cases.c.task_id.in_(IDS))
            .group_by(tv.cases.c.task_id)
        ).all(),
        "balances": lambda c: c.execute(
            select(db.balances).where(db.balances.c.account.in_(["escrow:x"]))
        ).all(),
    }


def built_once() -> dict[str, Callable[[Any], Any]]:
    """The same statements as the coordinator runs them now."""
    return {
        "assigned tasks": lambda c: results.assigned(c, WHO, IDS),
        "jobs by id": lambda c: service.jobs_by_id(c, {"j1"}),
        "racing copies": lambda c: speculation.racing(c, IDS),
        "case rounds": lambda c: c.execute(verification._CASE_ROUNDS, {"ids": IDS}).all(),
        "balances": lambda c: store.balances_for(c, ["escrow:x"]),
    }


def measure(engine: Engine, label: str, rounds: int) -> None:
    ways = {"per call": per_call(), "built once": built_once()}
    spent: dict[tuple[str, str], float] = {}
    with db.reader(engine).connect() as conn:
        for _ in range(3):  # interleaved, so both ways meet the same machine
            for way, steps in ways.items():
                for name, step in steps.items():
                    for _ in range(rounds // 10):  # warm the caches
                        step(conn)
                    t0 = time.process_time()
                    for _ in range(rounds):
                        step(conn)
                    key = (way, name)
                    spent[key] = spent.get(key, 0.0) + (time.process_time() - t0) / rounds / 3
    print(f"{label}: CPU a statement, µs (this process), {rounds} x 3 of each")
    total = {way: 0.0 for way in ways}
    for name in ways["per call"]:
        before, after = spent[("per call", name)], spent[("built once", name)]
        total["per call"] += before
        total["built once"] += after
        print(
            f"  {name:<15} per call {before * 1e6:7.1f}  built once {after * 1e6:7.1f}"
            f"  ratio {before / after:.2f}"
        )
    print(
        f"  all five        per call {total['per call'] * 1e6:7.1f}  built once "
        f"{total['built once'] * 1e6:7.1f}  ratio {total['per call'] / total['built once']:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2000)
    rounds = ap.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        engine = db.make_engine(f"sqlite:///{tmp}/bench.db")
        db.migrate(engine)
        measure(engine, "SQLite", rounds)
        engine.dispose()
    with scratch_database("st") as url:
        engine = db.make_engine(url)
        db.migrate(engine)
        measure(engine, "PostgreSQL", rounds // 4)
        engine.dispose()


if __name__ == "__main__":
    main()
