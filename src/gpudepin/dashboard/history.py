"""Headline figures sampled over time: the "24 h ago" column and the utilization chart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select

from gpudepin.coordinator.tables_dashboard import stats_samples
from gpudepin.dashboard import figures

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime

KEEP_S = 35 * figures.DAY


def record(conn: Connection, sample: figures.Headline) -> None:
    """Store one sample (money as decimal strings: JSON numbers would lose digits)."""
    data = {
        k: str(v) if isinstance(v, int) and v > 2**53 else v for k, v in sample.to_dict().items()
    }
    conn.execute(insert(stats_samples).values(at=sample.at, figures=data))
    conn.execute(delete(stats_samples).where(stats_samples.c.at < sample.at - KEEP_S))


def latest_at(conn: Connection) -> float | None:
    row = conn.execute(select(stats_samples.c.at).order_by(stats_samples.c.at.desc())).first()
    return None if row is None else float(row[0])


def near(conn: Connection, at: float, tolerance_s: float = 3 * 3600.0) -> dict[str, Any] | None:
    """The sample taken at or just before ``at`` (within ``tolerance_s``), or None."""
    row = conn.execute(
        select(stats_samples)
        .where(stats_samples.c.at <= at, stats_samples.c.at >= at - tolerance_s)
        .order_by(stats_samples.c.at.desc())
    ).first()
    return None if row is None else _decode(row.figures)


def since(conn: Connection, start: float, limit: int = 2000) -> list[dict[str, Any]]:
    """Samples from ``start`` on, oldest first (thinned evenly to at most ``limit``)."""
    rows = [
        _decode(r.figures)
        for r in conn.execute(
            select(stats_samples).where(stats_samples.c.at >= start).order_by(stats_samples.c.at)
        )
    ]
    step = max(1, len(rows) // limit + (len(rows) % limit > 0))
    return rows[::step]


def _decode(data: dict[str, Any]) -> dict[str, Any]:
    return {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in data.items()}


def sample_stats(rt: Runtime) -> None:
    """Loop duty: snapshot the headline figures every ``stats_sample_interval_s``."""
    now = rt.clock()
    with rt.reader.connect() as conn:
        last = latest_at(conn)
    if last is not None and now - last < rt.settings.stats_sample_interval_s:
        return
    with rt.engine.begin() as conn:
        # another coordinator may have sampled meanwhile
        last = latest_at(conn)
        if last is not None and now - last < rt.settings.stats_sample_interval_s:
            return
        record(conn, figures.headline(conn, now, rt.settings.assignment_ttl_s))
