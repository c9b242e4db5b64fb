"""SQL adapters: the ledger's balances and journal, the event log and blob ownership."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Numeric, String, bindparam, cast, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gpudepin.coordinator import db
from gpudepin.core.errors import InsufficientFunds
from gpudepin.core.ledger import WORLD, Transaction, net_change


def lock_balances(conn: Connection, accounts: Iterable[str]) -> dict[str, int]:
    """Current balances of ``accounts``, row-locked on PostgreSQL until commit.

    Rows are locked in the order the query returns them, so it is sorted: two payments
    locking the same accounts (one job's escrow, the fees account) in one statement
    each can then never hold one row each and wait for the other's.
    """
    q = _LOCK_BALANCES if conn.dialect.name == "postgresql" else _BALANCES
    return {r.account: r.amount for r in conn.execute(q, {"names": sorted(set(accounts))})}


# built once, as every statement of a result's path (see results.py)
_BALANCES = select(db.balances).where(db.balances.c.account.in_(bindparam("names", expanding=True)))
_LOCK_BALANCES = _BALANCES.order_by(db.balances.c.account).with_for_update()


def all_balances(conn: Connection) -> dict[str, int]:
    return {r.account: r.amount for r in conn.execute(select(db.balances))}


def apply(
    conn: Connection,
    txn: Transaction | None,
    now: float,
    locked: Mapping[str, int] | None = None,
) -> None:
    """Write a balanced transaction: journal rows plus updated balances, atomically.

    ``locked`` is what ``lock_balances`` returned for (at least) the transaction's
    accounts when the caller read them already, to decide the transaction: one read
    instead of two of rows that every payment locks.
    """
    if txn is None:
        return
    accounts = {p.account for p in txn.postings}
    if locked is None:
        locked = lock_balances(conn, accounts)
    current = {a: v for a, v in locked.items() if a in accounts}
    new = dict(current)
    for p in txn.postings:
        new[p.account] = new.get(p.account, 0) + p.amount
        if p.account != WORLD and new[p.account] < 0:
            raise InsufficientFunds(f"{p.account} would go negative")
    conn.execute(insert(db.ledger_entries), _journal_rows(txn, now))
    changed = [{"b_account": a, "b_amount": v} for a, v in new.items() if a in current]
    if changed:
        conn.execute(_SET_BALANCE, changed)
    opened = [{"account": a, "amount": v} for a, v in new.items() if a not in current]
    if opened:
        conn.execute(insert(db.balances), opened)


def post(conn: Connection, txns: Iterable[Transaction], now: float, last: bool = False) -> None:
    """Write balanced transactions without locking their balances first, for the rows
    every payment shares (one job's escrow, the fees account).

    On PostgreSQL the journal rows go in first, then the accounts not opened yet are
    opened at zero, then each account's net change is added by the server, in one order
    (no deadlock): the shared rows are locked from that write to the commit only, and
    the database's check (``db.COVERED``) refuses a balance below zero, raising
    InsufficientFunds; the caller's transaction rolls back with it. Locked by
    ``lock_balances`` and written later, the rows were held across every round trip in
    between, and on a busy machine each one is a wait for a CPU and the GIL: results of
    one job queued on the escrow row at a few dozen a second. With ``last`` (the caller
    commits right after) the last write goes out with the COMMIT behind it
    (``db.last_write``), and a refusal may surface at the commit. SQLite has one writer
    anyway (and no arbitrary-size arithmetic for the text amounts), so there it is
    ``apply``.
    """
    txns = list(txns)
    if conn.dialect.name != "postgresql":
        for txn in txns:
            apply(conn, txn, now)
        return
    if not txns:
        return
    conn.execute(insert(db.ledger_entries), [e for txn in txns for e in _journal_rows(txn, now)])
    # sorted: rows are locked in this order, as lock_balances locks them (no deadlock)
    change = sorted(net_change(txns).items())
    # accounts not opened yet are opened at zero first, and only those: an insert that
    # meets an existing row another payment is updating waits for that payment's commit
    # (every payment's "open the fees account" queued behind the last one's), while this
    # read waits for nobody. Not one upsert either: PostgreSQL checks an upsert's proposed
    # row, the bare (negative) change, against the balance check before it finds the row
    present = {r.account for r in conn.execute(_BALANCES, {"names": [a for a, _ in change]})}
    opened = [{"account": a, "amount": 0} for a, _ in change if a not in present]
    if opened:
        conn.execute(_OPEN_ACCOUNT, opened)
    added = [{"b_account": a, "b_delta": str(v)} for a, v in change]
    if last:
        db.last_write(conn, _ADD_TO_BALANCE, added)
    else:
        conn.execute(_ADD_TO_BALANCE, added)


# built once (building them cost more than running them)
_OPEN_ACCOUNT = pg_insert(db.balances).on_conflict_do_nothing(
    index_elements=[db.balances.c.account]
)
_ADD_TO_BALANCE = (
    update(db.balances)
    .where(db.balances.c.account == bindparam("b_account"))
    .values(
        amount=cast(
            cast(db.balances.c.amount, Numeric) + cast(bindparam("b_delta", type_=String), Numeric),
            String,
        )
    )
)


def _journal_rows(txn: Transaction, now: float) -> list[dict[str, Any]]:
    """The journal's rows for ``txn``: one per posting, under one new transaction id."""
    txn_id = uuid.uuid4().hex
    return [
        {
            "txn_id": txn_id,
            "at": now,
            "kind": txn.kind,
            "ref": txn.ref,
            "memo": txn.memo,
            "account": p.account,
            "amount": p.amount,
        }
        for p in txn.postings
    ]


# built once: a transaction's balances are written with one executemany
_SET_BALANCE = (
    update(db.balances)
    .where(db.balances.c.account == bindparam("b_account"))
    .values(amount=bindparam("b_amount", type_=db.Amount))
)


def balances_for(conn: Connection, accounts: Iterable[str]) -> dict[str, int]:
    names = list(accounts)
    found = {r.account: r.amount for r in conn.execute(_BALANCES, {"names": names})}
    return {a: found.get(a, 0) for a in names}


def record(
    conn: Connection,
    now: float,
    kind: str,
    *,
    job_id: str | None = None,
    task_id: str | None = None,
    actor: str | None = None,
    **detail: Any,
) -> None:
    """Append to the event log (the audit trail people and disputes read)."""
    conn.execute(
        insert(db.events).values(
            at=now, job_id=job_id, task_id=task_id, actor=actor, kind=kind, detail=detail
        )
    )


def record_many(conn: Connection, now: float, kind: str, rows: list[dict[str, Any]]) -> None:
    """Append several events at once, of ``kind`` unless a row names its own ``kind``;
    each row names its ``job_id``, ``task_id`` and ``actor`` (any of them may be None)
    and may carry ``detail``."""
    conn.execute(
        insert(db.events),
        [
            {
                "at": now,
                "job_id": r.get("job_id"),
                "task_id": r.get("task_id"),
                "actor": r.get("actor"),
                "kind": r.get("kind", kind),
                "detail": r.get("detail", {}),
            }
            for r in rows
        ],
    )


def note_blobs(conn: Connection, uploader: str, sizes: dict[str, int], now: float) -> None:
    """Record that ``uploader`` holds the blobs ``sizes`` names (ownership is per
    uploader: a buyer may only use files it uploaded itself)."""
    if not sizes:
        return
    conn.execute(
        _NOTE_BLOB[conn.dialect.name],
        [
            {"sha256": sha, "uploader": uploader, "size": size, "created_at": now}
            for sha, size in sorted(sizes.items())  # in one order, as every batch
        ],
    )


# one statement, known rows left alone (the row is the same whoever wrote it first)
_NOTE_BLOB = {
    "sqlite": sqlite_insert(db.blobs).on_conflict_do_nothing(),
    "postgresql": pg_insert(db.blobs).on_conflict_do_nothing(),
}


def keep_inline(conn: Connection, uploader: str, contents: dict[str, bytes], now: float) -> None:
    """Keep results ``uploader`` handed in inline (sha256 to bytes) in the database, as
    its blobs: in the transaction that records them, so a result is there exactly when
    its acceptance is."""
    if not contents:
        return
    note_blobs(conn, uploader, {sha: len(data) for sha, data in contents.items()}, now)
    conn.execute(
        _KEEP_SMALL[conn.dialect.name],
        [{"sha256": sha, "content": data} for sha, data in sorted(contents.items())],
    )


_KEEP_SMALL = {
    "sqlite": sqlite_insert(db.small_blobs).on_conflict_do_nothing(),
    "postgresql": pg_insert(db.small_blobs).on_conflict_do_nothing(),
}


def small_blobs(conn: Connection, shas: Iterable[str]) -> dict[str, bytes]:
    """The bytes of those of ``shas`` kept in the database (see ``keep_inline``)."""
    wanted = sorted(set(shas))
    found: dict[str, bytes] = {}
    for at in range(0, len(wanted), 500):  # a job's merge asks for all its results
        rows = conn.execute(_SMALL_BLOBS, {"shas": wanted[at : at + 500]})
        found.update((row.sha256, bytes(row.content)) for row in rows)
    return found


_SMALL_BLOBS = select(db.small_blobs.c.sha256, db.small_blobs.c.content).where(
    db.small_blobs.c.sha256.in_(bindparam("shas", expanding=True))
)
