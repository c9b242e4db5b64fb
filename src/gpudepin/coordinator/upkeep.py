"""Table statistics and dead rows on PostgreSQL, when the server's autovacuum is off.

PostgreSQL plans each query from per-table statistics, which ANALYZE gathers; autovacuum
runs it (and VACUUM, which reclaims dead rows) as tables change. A server with autovacuum
off, as on this project's test machines, never gathers them: a table that grew from
empty is planned as if it were still empty. A claim then sorted every pending task of the
queue, and antijoined each one with the job's terms, instead of walking the claim's index
to the first task it may take: 30 ms of the server's CPU a claim under load, 0.4 ms once
the tables were analyzed (docs/benchmarks/load.md). So where the server will not, the
coordinator looks after its own tables, at autovacuum's default thresholds.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime

log = logging.getLogger("gpudepin.upkeep")

CHECK_EVERY_S = 10.0
# autovacuum's defaults: analyze after 50 + 10% of a table's rows changed, vacuum after
# 50 + 20% of them died
ANALYZE_BASE, ANALYZE_SCALE = 50, 0.1
VACUUM_BASE, VACUUM_SCALE = 50, 0.2
# one coordinator at a time: two would only queue on each other's table locks
_LOCK_KEY = 0x6770_7564_7570  # "gpudup"

_TABLES = text(
    "SELECT relname, n_live_tup, n_dead_tup, n_mod_since_analyze, "
    "last_analyze IS NULL AS never FROM pg_stat_user_tables "
    "WHERE schemaname = current_schema()"
)


def upkeep_for(live: int, dead: int, modified: int, never: bool) -> str | None:
    """What a table needs: ``"VACUUM (ANALYZE)"``, ``"ANALYZE"`` or nothing. A table never
    analyzed is analyzed as soon as it holds rows (the planner takes it for empty)."""
    if dead > VACUUM_BASE + VACUUM_SCALE * live:
        return "VACUUM (ANALYZE)"
    if modified > ANALYZE_BASE + ANALYZE_SCALE * live or (never and modified > 0):
        return "ANALYZE"
    return None


def statistics_duty(rt: Runtime) -> None:
    """Every ``CHECK_EVERY_S``, on PostgreSQL with autovacuum off, analyze (and vacuum)
    the tables that need it; nothing on SQLite or where autovacuum runs. The work runs in
    a thread of its own (``rt.caches["upkeep"]["worker"]``): a VACUUM of a large table
    takes long, and the other duties (requeueing silent agents' tasks) must not wait."""
    if rt.engine.dialect.name != "postgresql":
        return
    state = rt.caches.setdefault("upkeep", {"next": 0.0, "autovacuum": None, "worker": None})
    now = rt.clock()
    busy = state["worker"] is not None and state["worker"].is_alive()
    if now < state["next"] or state["autovacuum"] or busy:
        return
    state["next"] = now + CHECK_EVERY_S
    state["worker"] = threading.Thread(
        target=_pass, args=(rt, state), name="gpudepin-upkeep", daemon=True
    )
    state["worker"].start()


def _pass(rt: Runtime, state: dict[str, Any]) -> None:
    try:
        # VACUUM cannot run inside a transaction
        with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if state["autovacuum"] is None:
                state["autovacuum"] = autovacuum_on(conn)
                if state["autovacuum"]:
                    return
                log.warning(
                    "PostgreSQL's autovacuum is off: the coordinator analyzes and vacuums "
                    "its own tables (every %.0f s, at autovacuum's default thresholds)",
                    CHECK_EVERY_S,
                )
            look_after(conn)
    except Exception:  # the next pass tries again (a database restart, say)
        log.exception("upkeep pass failed")


def autovacuum_on(conn: Connection) -> bool:
    return conn.execute(text("SELECT current_setting('autovacuum')")).scalar() == "on"


def look_after(conn: Connection) -> list[str]:
    """Analyze or vacuum each table of the schema that needs it (``conn`` in autocommit);
    what was run. Nothing while another coordinator is at it."""
    if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY}).scalar():
        return []
    ran = []
    try:
        for row in conn.execute(_TABLES).all():
            what = upkeep_for(row.n_live_tup, row.n_dead_tup, row.n_mod_since_analyze, row.never)
            if what is not None:
                table = conn.dialect.identifier_preparer.quote(row.relname)
                conn.exec_driver_sql(f"{what} {table}")
                ran.append(f"{what} {row.relname}")
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
    if ran:
        log.debug("upkeep: %s", "; ".join(ran))
    return ran
