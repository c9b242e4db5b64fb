"""What every chaos run must leave true, read from the coordinator's own database.

After a fault: every job ended (completed, or failed with a reason); the books balance;
every accepted task was paid exactly once, at its price, and nothing else was paid; no
escrow is left behind; and no task was handed out again unless an attempt was lost first
(an expiry, a give-back or a rejection), so nothing ran to completion twice without cause.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.core.errors import Unavailable
from gpudepin.identity import load_or_create_key

TERMINAL = ("completed", "failed", "cancelled")
LOST_ATTEMPT = ("task_expired", "task_failed", "task_rejected")
PAYMENT_KINDS = ("pay", "pay_held")


def seeded_rng(name: str, seed: int | None = None) -> random.Random:
    """A generator for a run's random choices; the seed is printed so a failure replays
    (pytest shows it with the failure's captured output)."""
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    print(f"chaos seed for {name}: {seed}")
    return random.Random(seed)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll a condition of the live network (bounded); a coordinator that is restarting
    counts as 'not yet'."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Unavailable:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def buyer_of(net: LocalNetwork, tokens: str = "50") -> Client:
    client = Client(net.api_url, load_or_create_key(net.home, "buyer"))
    client.faucet(tokens)
    return client


def online(client: Client) -> int:
    return sum(p["online"] for p in client.providers())


def echo_job(buyer: Client, tasks: int, sleep_s: float, seed: int, price: str = "0.01") -> str:
    job = buyer.submit_job("echo", {"tasks": tasks, "sleep_s": sleep_s, "seed": seed}, {}, price)
    return str(job["id"])


def wait_all_ended(buyer: Client, job_ids: list[str], timeout: float = 90.0) -> None:
    wait_for(
        f"{len(job_ids)} jobs to end",
        lambda: all(buyer.job(j)["state"] in TERMINAL for j in job_ids),
        timeout,
    )


@dataclass
class Books:
    """The rows the invariants are checked against."""

    jobs: list[Any]
    tasks: list[Any]
    payments: list[Any]  # one row per payment transaction: txn, memo, paid (positive)
    events: list[Any]
    escrow: dict[str, int]  # job id -> what is left in its escrow account

    def events_of(self, task_id: str) -> Counter[str]:
        return Counter(e.kind for e in self.events if e.task_id == task_id)


def sqlite_url(net: LocalNetwork) -> str:
    return f"sqlite:///{net.home / 'coordinator.db'}"


def read_books(db_url: str, job_ids: list[str]) -> Books:
    url = db_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ids = {"ids": tuple(job_ids)}
            jobs = list(conn.execute(text("SELECT * FROM jobs"), {}))
            jobs = [j for j in jobs if j.id in ids["ids"]]
            tasks = [t for t in conn.execute(text("SELECT * FROM tasks")) if t.job_id in job_ids]
            payments = list(
                conn.execute(
                    text(
                        "SELECT txn_id, ref, memo, amount FROM ledger_entries "
                        "WHERE kind IN ('pay', 'pay_held') AND account LIKE 'escrow:%'"
                    )
                )
            )
            events = list(conn.execute(text("SELECT kind, task_id, job_id, actor FROM events")))
            escrow = {
                r.account.rsplit(":", 1)[1]: int(r.amount)
                for r in conn.execute(
                    text("SELECT account, amount FROM balances WHERE account LIKE 'escrow:%'")
                )
            }
    finally:
        engine.dispose()
    return Books(jobs, tasks, payments, events, escrow)


def check_invariants(buyer: Client, db_url: str, job_ids: list[str]) -> Books:
    """Assert every invariant of a chaos run; returns the books for scenario checks."""
    summary = buyer.ledger_summary()
    assert summary["balanced"], summary["problems"]
    books = read_books(db_url, job_ids)
    assert {j.id for j in books.jobs} == set(job_ids)
    for job in books.jobs:
        assert job.state in TERMINAL, f"job {job.id} is still {job.state}"
        if job.state != "completed":
            assert job.reason, f"job {job.id} {job.state} without a reason"
        assert books.escrow.get(job.id, 0) == 0, f"job {job.id} left escrow behind"
    paid: dict[str, list[int]] = {}
    for p in books.payments:
        paid.setdefault(p.memo.removeprefix("task "), []).append(-int(p.amount))
    task_ids = {t.id for t in books.tasks}
    for task in books.tasks:
        got = paid.get(task.id, [])
        if task.state == "accepted":
            assert got == [int(task.price)], f"task {task.id} paid {got}, price {task.price}"
        else:
            assert got == [], f"task {task.id} is {task.state} yet was paid {got}"
        seen = books.events_of(task.id)
        lost = sum(seen[k] for k in LOST_ATTEMPT)
        assert seen["task_accepted"] == (task.state == "accepted"), (task.id, seen)
        assert seen["task_assigned"] <= 1 + lost, f"task {task.id} re-run without cause: {seen}"
        assert seen["task_submitted"] <= 1 + seen["task_rejected"], (task.id, seen)
    stray = {t for t in paid if t.startswith(tuple(job_ids)) and t not in task_ids}
    assert not stray, f"payments for unknown tasks: {stray}"
    return books


def network(
    home: Path, providers: int, ttl: float = 3.0, db_url: str | None = None
) -> Iterator[LocalNetwork]:
    """A local network for chaos: short assignment ttl, audits off (they would take polls
    and pay auditors from fees; the trust layer is tested on its own) and posted prices
    (an auction's bid window would only add its wait to every job)."""
    net = LocalNetwork(
        home,
        providers=providers,
        port=0,
        db_url=db_url,
        assignment_ttl_s=ttl,
        extra_coordinator_args=["--no-audits", "--no-market"],
    )
    net.start()
    try:
        yield net
    finally:
        # agents and the coordinator's long polls may linger for seconds after SIGTERM;
        # a chaos run need not wait for them to say goodbye
        for name in sorted(net.procs, key=lambda n: n == "coordinator"):
            net.kill(name)
        net.stop()
