"""Tables, engines and migrations. SQLite (WAL) by default, PostgreSQL by URL.

Amounts of money are stored as decimal strings: 18-decimal base units overflow 64-bit
integers, and SQLite's NUMERIC would silently turn them into floats.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from psycopg.errors import PipelineAborted
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Executable
from sqlalchemy.types import TypeDecorator

from gpudepin.core.errors import InsufficientFunds

T = TypeVar("T")

metadata = MetaData()


class Amount(TypeDecorator[int]):
    """An arbitrary-size integer stored as text."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Any) -> str | None:
        return None if value is None else str(int(value))

    def process_result_value(self, value: str | None, dialect: Any) -> int | None:
        return None if value is None else int(value)


auth_nonces = Table(
    "auth_nonces",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("address", String(42), nullable=False),
    Column("message", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("address", String(42), nullable=False),
    Column("expires_at", Float, nullable=False),
)

providers = Table(
    "providers",
    metadata,
    Column("address", String(42), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("region", String(40), nullable=False),
    Column("operator", String(100), nullable=False),
    Column("gpu_class", String(40), nullable=False),
    Column("hardware", JSON, nullable=False),
    Column("registered_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("agent_version", String(20), nullable=False, default=""),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("buyer", String(42), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("state", String(20), nullable=False, index=True),
    Column("spec", JSON, nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("price_per_task", Amount, nullable=False),
    Column("escrow", Amount, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("reason", Text, nullable=True),
    Column("outputs", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("job_id", String(32), nullable=False, index=True),
    Column("idx", Integer, nullable=False),
    Column("label", String(100), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("price", Amount, nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("provider", String(42), nullable=True),
    Column("assigned_at", Float, nullable=True),
    Column("deadline", Float, nullable=True),
    Column("result_sha256", String(64), nullable=True),
    Column("result_meta", JSON, nullable=True),
    Column("signature", String(140), nullable=True),
    Column("updated_at", Float, nullable=False),
    Index("ix_tasks_state_deadline", "state", "deadline"),
    Index("ix_tasks_state_order", "state", "updated_at", "idx"),  # the claim's order
    Index("ix_tasks_provider_state", "provider", "state"),  # a heartbeat's tasks
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("job_id", String(32), nullable=True, index=True),
    Column("task_id", String(40), nullable=True),
    Column("actor", String(42), nullable=True),
    Column("kind", String(40), nullable=False),
    Column("detail", JSON, nullable=False),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("txn_id", String(32), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("ref", String(80), nullable=False),
    Column("memo", Text, nullable=False),
    Column("account", String(120), nullable=False, index=True),
    Column("amount", Amount, nullable=False),
)

balances = Table(
    "balances",
    metadata,
    Column("account", String(120), primary_key=True),
    Column("amount", Amount, nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    # one row per uploader: a buyer may only use blobs it uploaded itself
    Column("uploader", String(42), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)

# the bytes of results handed in inline (at most INLINE_RESULT_BYTES): kept here, with
# the result's own transaction, instead of as a file each; BlobStore reads them back
small_blobs = Table(
    "small_blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("content", LargeBinary, nullable=False),
)


class FairLock:
    """A lock taken in the order it was asked for.

    SQLite's writer lock is taken by the event loop's quick writes and by the thread
    pool's larger ones (a job's creation). A plain ``threading.Lock`` goes to whoever
    asks while it is free, and the busy event loop, releasing it and asking again in the
    same breath, nearly always won: in the load benchmark's saturated window sixteen
    buyers' jobs waited over 40 s to be written, and timed out. Here a release hands the
    lock to the longest waiter.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def acquire(self, timeout: float) -> bool:
        """Take the lock within ``timeout`` seconds; False when it was not handed over."""
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        if turn.acquire(timeout=timeout):
            return True  # handed over by release(): the lock is ours
        with self._mutex:
            if turn in self._waiters:
                self._waiters.remove(turn)
                return False
        return True  # handed over just as the wait timed out

    def release(self) -> None:
        """Hand the lock to the longest waiter, or free it when nobody waits."""
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # still held: by the next in line
            else:
                self._held = False


READ_ONLY = "gpudepin_read_only"  # execution option of the engine that only reads


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys.

    On SQLite a write transaction starts with ``BEGIN IMMEDIATE`` (read-then-write never
    deadlocks) after taking this process's writer lock (a ``FairLock``): writers queue on
    the lock in order instead of in SQLite's busy handler, which sleeps up to 100 ms between tries
    and made tail latency seconds long under load. Reads go through ``reader(engine)``
    and begin deferred, so in WAL mode they never wait for a writer.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=40
        )
        writer = FairLock()

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # isolation_level None lets us issue BEGIN ourselves (see _begin)
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")  # one snapshot for the block, no lock
                return
            if not conn.info.get("holds_writer"):  # a connection keeps it till checked in
                if not writer.acquire(timeout=30):
                    raise TimeoutError("the database's writer lock was held for 30 s")
                conn.info["holds_writer"] = True
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        # released when the connection goes back to the pool, i.e. after its COMMIT or
        # ROLLBACK has run: released earlier, the next BEGIN IMMEDIATE would find the
        # database still locked and SQLite would put it to sleep
        @event.listens_for(engine.pool, "checkin")
        def _release(_dbapi_conn: Any, record: Any) -> None:
            if record is not None and record.info.pop("holds_writer", False):
                writer.release()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # no pre-ping: a "SELECT 1" before every transaction was a fifth of the coordinator's
    # CPU per task on PostgreSQL. A connection the server dropped (a restart) fails the one
    # call that finds it, and SQLAlchemy then replaces every pooled connection older than
    # it; recycling after 30 minutes keeps idle ones from going stale behind a proxy.
    # All forty connections (one a thread of the pool that runs requests) stay open: as
    # 20 kept and 20 overflow, those over twenty were closed on every check-in, and each
    # new one planned its statements afresh (psycopg prepares one on its fifth run on a
    # connection): planning was 20 s of the server's CPU in a 35 s load window, 6 s now.
    engine = create_engine(url, pool_size=40, max_overflow=0, pool_recycle=1800)

    @event.listens_for(engine, "rollback")
    def _abandon_pipeline(conn: Connection) -> None:
        # a write sent with the commit was refused (a constraint, a deadlock): the
        # answers still due are read and dropped, and the rollback runs outside the
        # pipeline (inside, it would raise on them)
        if not conn.invalidated:
            _leave_pipeline(conn.connection.info, refused=True)

    @event.listens_for(engine.pool, "checkin")
    def _close_pipeline(_dbapi_conn: Any, record: Any) -> None:
        if record is None:
            return
        try:
            _leave_pipeline(record.info, refused=False)  # committed: nothing is due
        except Exception as exc:  # a broken connection: never lent again
            record.invalidate(exc)

    @event.listens_for(engine, "handle_error")
    def _refused_balance(ctx: Any) -> Exception | None:
        diag = getattr(ctx.original_exception, "diag", None)
        if diag is None or diag.constraint_name != COVERED:
            return None
        return InsufficientFunds(f"a balance would go below zero ({diag.message_detail})")

    return engine


# the check that keeps every balance but the world's at or above zero on PostgreSQL
# (migration 0003); a write it refuses raises InsufficientFunds
COVERED = "ck_balances_covered"
# a pooled connection's open psycopg pipeline (last_write), left when it is checked in
_PIPELINE = "gpudepin_pipeline"


def last_write(conn: Connection, statement: Executable, params: Any = None) -> None:
    """Run ``statement`` as its transaction's last write: the caller commits right after
    and runs nothing else on ``conn``; what the statement returns is never read.

    On PostgreSQL it is sent with the COMMIT queued right behind it (psycopg's pipeline
    mode), for the rows every transaction of a kind wants: one job's escrow and the fees
    account in each payment, a new job's state in each of its first claims. Such a row is
    then locked while the server runs the statement and commits, not also while this
    process waits for a CPU and the GIL to send the COMMIT, which under load was most of
    the hold (the load benchmark's result batches queued on the fees row, 429 of its
    upserts waited over 40 ms in one saturated window). A refusal, such as the balance
    check, is raised by the statement or, at the latest, by the commit.
    """
    if conn.dialect.name != "postgresql":
        conn.execute(statement, params)
        return
    pooled = conn.connection
    if _PIPELINE not in pooled.info:
        pipeline = pooled.driver_connection.pipeline()  # type: ignore[union-attr]
        pipeline.__enter__()
        pooled.info[_PIPELINE] = pipeline
    conn.execute(statement, params)


def _leave_pipeline(info: dict[Any, Any], refused: bool) -> None:
    """Leave the pipeline ``last_write`` opened on a pooled connection (``info`` is its
    record's), if one is open. After a refusal psycopg reads the skipped statements'
    answers as it leaves, and logs what it drops."""
    pipeline = info.pop(_PIPELINE, None)
    if pipeline is None:
        return
    if refused:
        aborted = PipelineAborted("a write sent with the commit was refused")
        pipeline.__exit__(PipelineAborted, aborted, None)
    else:
        pipeline.__exit__(None, None, None)


def reader(engine: Engine) -> Engine:
    """The same database for blocks that only read (``with reader.connect()``).

    On PostgreSQL the reads run in autocommit: at READ COMMITTED every statement takes
    its own snapshot inside a transaction too, so its BEGIN and ROLLBACK bought nothing
    but two round trips (a fifth of a poll's).
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT", **{READ_ONLY: True})
    return engine.execution_options(**{READ_ONLY: True})


# PostgreSQL breaks a deadlock (40P01) or a serialization conflict (40001) by aborting one
# of the transactions; run again, it finds the other one committed
_RETRYABLE = frozenset({"40P01", "40001"})


def transaction(engine: Engine, work: Callable[[Connection], T], attempts: int = 3) -> T:
    """``work(conn)`` in one transaction, run again when the database aborted it to end
    a deadlock. ``work`` must do nothing outside the transaction that a rerun repeats."""
    for attempt in range(1, attempts):
        try:
            with engine.begin() as conn:
                return work(conn)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) not in _RETRYABLE:
                raise
            # a rerun at once can take the rows back before the survivor it waited for
            # gets them, and deadlock with it again: let the survivor go first
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    with engine.begin() as conn:  # the last try: whatever it raises, the caller gets
        return work(conn)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revisions.

    Each domain (market, chain, verification, ...) adds its tables in a migration of its
    own branched from 0001, so the tree has several heads and we upgrade them all.
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["connection_engine"] = engine
    command.upgrade(cfg, "heads")
