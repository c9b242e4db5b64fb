"""Payments that share rows, on PostgreSQL: ``store.post`` against lock-then-write.

Every result of a job pays from the job's escrow and into the one fees account, so
concurrent payments queue on those rows for as long as each transaction holds them.
This runs the same payments from ``--threads`` threads (the coordinator's thread pool)
twice, side by side, in one process:

* **lock first**: ``store.lock_balances`` (``SELECT ... FOR UPDATE``), then the journal
  rows and the balances written, then the commit: the rows are held across three round
  trips, each one a wait for a CPU and the GIL on a busy machine;
* **post**: ``store.post``: the journal rows, then one statement that adds each net change
  (the database's check refuses a balance below zero), then the commit;
* **post, last write**: ``store.post(..., last=True)``, as a result batch pays: the same
  statement goes out with the COMMIT queued behind it (``db.last_write``), so the rows
  are no longer held while the thread waits for the GIL to send the COMMIT.

Each transaction also writes a few rows of its own first (an event, as a result does),
so the comparison is of where the shared rows are locked, not of empty transactions.

    python3 benchmarks/hot_rows.py [--threads 16] [--seconds 8] [--busy 1]

``--busy N`` runs N processes spinning on the CPU meanwhile (the coordinator under load
shares its cores with the agents' requests and PostgreSQL itself). Prints payments a
second for each way and their ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
from collections.abc import Callable

from _pg import scratch_database
from sqlalchemy import Connection, Engine, insert

from gpudepin.coordinator import db, store
from gpudepin.core import ledger

BUYER = "0x" + "b" * 40
JOB = "jhot"


def _lock_first(conn: Connection, provider: str) -> None:
    accounts = [ledger.escrow_account(BUYER, JOB), ledger.held_account(provider), ledger.FEES]
    locked = store.lock_balances(conn, accounts)
    pay = ledger.pay_many_into_hold(locked, BUYER, JOB, provider, [100] * 8, 1000)
    store.apply(conn, pay, 1.0, locked)


def _post(conn: Connection, provider: str, last: bool = False) -> None:
    seen = store.balances_for(conn, [ledger.escrow_account(BUYER, JOB)])
    pay = ledger.pay_many_into_hold(seen, BUYER, JOB, provider, [100] * 8, 1000)
    store.post(conn, [pay], 1.0, last=last)


def _post_last(conn: Connection, provider: str) -> None:
    _post(conn, provider, last=True)


def _run(
    eng: Engine, pay: Callable[[Connection, str], None], threads: int, seconds: float
) -> float:
    done = [0] * threads
    stop = threading.Event()

    def worker(i: int) -> None:
        provider = _provider(i)
        while not stop.is_set():
            with eng.begin() as conn:
                store.record(conn, 1.0, "bench", actor=provider)
                pay(conn, provider)
            done[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    time.sleep(seconds)  # the measured window (not synchronisation: the threads run on)
    stop.set()
    for t in pool:
        t.join()
    return sum(done) / seconds


def _provider(i: int) -> str:
    return "0x" + f"{i:040x}"


def _spin(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--busy", type=int, default=1, help="CPU-spinning processes meanwhile")
    args = ap.parse_args()
    with scratch_database("hot") as url:
        _measure(db.make_engine(url), args)


def _measure(eng: Engine, args: argparse.Namespace) -> None:
    try:
        db.migrate(eng)
        with eng.begin() as conn:
            store.apply(conn, ledger.deposit(BUYER, 10**15), 0.0)
            locked = store.lock_balances(conn, [ledger.available_account(BUYER)])
            store.apply(conn, ledger.lock_escrow(locked, BUYER, JOB, 10**15), 0.0)
            # the rows exist before the race: lock first then write would otherwise have
            # two threads both create the fees row, and one fail (post's upsert would not)
            opened = [ledger.FEES] + [
                ledger.held_account(_provider(i)) for i in range(args.threads)
            ]
            conn.execute(insert(db.balances), [{"account": a, "amount": 0} for a in opened])
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"{args.threads} threads, {args.seconds:.0f} s a way, {args.busy} busy processes")
        ways = {"lock first": _lock_first, "post": _post, "post, last write": _post_last}
        rates: dict[str, list[float]] = {way: [] for way in ways}
        stop_at = time.time() + 2 * len(ways) * (args.seconds + 1) + 2
        spinners = [
            multiprocessing.Process(target=_spin, args=(stop_at,), daemon=True)
            for _ in range(args.busy)
        ]
        for p in spinners:
            p.start()
        for _ in range(2):  # interleaved, so a change in the machine's load hits each
            for way, pay in ways.items():
                rates[way].append(_run(eng, pay, args.threads, args.seconds))
        for p in spinners:
            p.terminate()
        with eng.connect() as conn:
            balances = store.all_balances(conn)
        assert sum(balances.values()) == 0, "the ledger does not balance"
        best = {way: max(r) for way, r in rates.items()}
        for way, r in rates.items():
            print(
                f"{way:16s}: {best[way]:7.1f} payments/s (runs: {', '.join(f'{x:.1f}' for x in r)})"
            )
        print(f"ratio post / lock first: {best['post'] / best['lock first']:.2f}")
        print(f"ratio post, last write / post: {best['post, last write'] / best['post']:.2f}")
    finally:
        eng.dispose()


if __name__ == "__main__":
    main()
