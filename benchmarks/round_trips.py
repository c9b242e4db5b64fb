"""Round trips to PostgreSQL per API call, and what the reads' transactions cost.

On two shared cores every round trip to the database is a wait for a CPU and the GIL,
so a call's round trips decide much of its cost under load. This runs a coordinator
in-process on a fresh PostgreSQL database and makes the calls an agent makes between
and around tasks (heartbeat, poll, result, and their batched forms), counting per call:

* statements (an ``executemany`` travels in one pipeline, so it counts once);
* transaction control on the wire: a BEGIN, COMMIT or ROLLBACK that psycopg actually
  sends (none in autocommit, none to roll back a connection with nothing open).

Both ways of running the blocks that only read are measured side by side in one run:
**transaction** (BEGIN ... ROLLBACK around them, as before) and **autocommit** (as
``db.reader`` does now on PostgreSQL). Each way also times its calls serially.

    python3 benchmarks/round_trips.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _pg import scratch_database
from eth_account import Account
from fastapi.testclient import TestClient
from psycopg.pq import TransactionStatus
from sqlalchemy import event

from gpudepin.client import Client
from gpudepin.coordinator import db
from gpudepin.coordinator.app import create_app
from gpudepin.identity import result_message, sign_text
from gpudepin.settings import CoordinatorSettings
from gpudepin.workloads.echo import expected

CALLS = ("heartbeat", "poll 1", "result 1", "poll 8", "results 8")


class Counting:
    """Round trips the engine sends, per call label."""

    def __init__(self) -> None:
        self.label = ""
        self.seen: dict[str, Counter[str]] = defaultdict(Counter)

    def attach(self, engine: Any) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _statement(*_a: Any) -> None:
            self.seen[self.label]["statements"] += 1

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            if not conn.connection.dbapi_connection.autocommit:
                self.seen[self.label]["control"] += 1  # psycopg sends BEGIN with the first

        def _end(conn: Any) -> None:
            raw = conn.connection.dbapi_connection
            if raw.info.transaction_status != TransactionStatus.IDLE:
                self.seen[self.label]["control"] += 1

        event.listen(engine, "commit", _end)
        event.listen(engine, "rollback", _end)


def _client(tc: TestClient) -> Client:
    http = TestClient(tc.app, base_url="http://testserver/v1")
    return Client("http://testserver", Account.create(), http=http)


def _item(prov: Client, task: dict[str, Any]) -> dict[str, Any]:
    data = expected(task["job_spec"], task["task_spec"])
    sha = hashlib.sha256(data).hexdigest()
    sig = sign_text(prov.account, result_message(task["id"], sha))
    body = {"task_id": task["id"], "sha256": sha, "signature": sig, "meta": {}}
    return body | {"content_b64": base64.b64encode(data).decode()}


def run(rounds: int) -> None:
    with scratch_database("rt") as url:
        settings = CoordinatorSettings(home=Path(tempfile.mkdtemp()), db_url=url)
        app = create_app(settings, run_loops=False)
        with TestClient(app) as tc:
            measure(tc, app.state.rt, rounds)


def measure(tc: TestClient, rt: Any, rounds: int) -> None:
    count = Counting()
    count.attach(rt.engine)
    buyer = _client(tc)
    buyer.faucet("1000")
    tasks_needed = rounds * 2 * (1 + 8) + 16
    buyer.submit_job("echo", {"tasks": tasks_needed, "sleep_s": 0.0, "seed": 7}, {}, "0.0001")
    prov = _client(tc)
    prov.register_provider("p", "eu-west", "op-p", {"gpu_class": "cpu", "cores": 2}, "t")
    prov.heartbeat([])
    ways = {
        "transaction": rt.engine.execution_options(**{db.READ_ONLY: True}),  # the old reader
        "autocommit": db.reader(rt.engine),
    }
    held: list[dict[str, Any]] = []
    steps: dict[str, Callable[[], Any]] = {
        "heartbeat": lambda: prov.heartbeat([]),
        "poll 1": lambda: held.extend(prov.poll_tasks(0, 1)),
        "result 1": lambda: prov._send(
            "POST", f"/tasks/{held[0]['id']}/result", json=_item(prov, held.pop(0))
        ),
        "poll 8": lambda: held.extend(prov.poll_tasks(0, 8)),
        "results 8": lambda: prov._send(
            "POST", "/tasks/results", json={"results": [_item(prov, held.pop(0)) for _ in range(8)]}
        ),
    }
    spent: dict[str, float] = defaultdict(float)
    for _ in range(rounds):
        for way, reader in ways.items():  # interleaved, so both meet the same machine
            rt.reader = reader
            for call, step in steps.items():
                count.label = f"{way}/{call}"
                t0 = time.perf_counter()
                step()
                spent[count.label] += time.perf_counter() - t0
    print(f"PostgreSQL, {rounds} of each call per way, serially, in-process")
    print(
        f"{'call':<10} {'way':<12} {'statements':>10} {'control':>8} {'round trips':>11} {'ms':>7}"
    )
    totals = {}
    for way in ways:
        totals[way] = 0.0
        for call in CALLS:
            seen = count.seen[f"{way}/{call}"]
            trips = (seen["statements"] + seen["control"]) / rounds
            totals[way] += trips
            ms = spent[f"{way}/{call}"] / rounds * 1000
            print(
                f"{call:<10} {way:<12} {seen['statements'] / rounds:>10.1f} "
                f"{seen['control'] / rounds:>8.1f} {trips:>11.1f} {ms:>7.2f}"
            )
    for call in CALLS:
        before = sum(count.seen[f"transaction/{call}"].values())
        after = sum(count.seen[f"autocommit/{call}"].values())
        t_before, t_after = spent[f"transaction/{call}"], spent[f"autocommit/{call}"]
        print(
            f"ratio {call:<10} round trips autocommit / transaction {after / before:.2f}, "
            f"time {t_after / t_before:.2f}"
        )
    print(
        f"round trips for the five calls: {totals['transaction']:.1f} -> {totals['autocommit']:.1f}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    run(ap.parse_args().rounds)
