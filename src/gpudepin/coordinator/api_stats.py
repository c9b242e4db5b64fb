"""Public network figures: ``GET /v1/stats`` (what `gpudepin stats` prints) and the live
network's ``NetworkFigures`` for the viability scorecard."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from gpudepin.coordinator.api import runtime
from gpudepin.coordinator.app import Runtime
from gpudepin.dashboard import figures, history
from gpudepin.economics.viability import scorecard

router = APIRouter(prefix="/v1")


@router.get("/stats")
def stats(rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """Headline figures now and 24 h ago, regions, prices and earnings per GPU-day."""
    with rt.reader.connect() as conn:
        return figures.snapshot(
            conn, rt.clock(), rt.settings.assignment_ttl_s, rt.settings.token_usd
        )


@router.get("/stats/daily")
def stats_daily(
    days: int = Query(default=14, ge=1, le=90), rt: Runtime = Depends(runtime)
) -> list[dict[str, Any]]:
    """Jobs, leases, volume, fees, burns and emissions per day (base units as strings)."""
    with rt.reader.connect() as conn:
        rows = figures.daily(conn, rt.clock(), days)
    return [{k: str(v) if isinstance(v, int) else v for k, v in r.items()} for r in rows]


@router.get("/stats/history")
def stats_history(
    hours: float = Query(default=168, gt=0, le=24 * 35), rt: Runtime = Depends(runtime)
) -> list[dict[str, Any]]:
    """Sampled headline figures of the last ``hours`` hours, oldest first."""
    with rt.reader.connect() as conn:
        rows = history.since(conn, rt.clock() - hours * 3600)
    return [figures.public_headline(r) for r in rows]


@router.get("/stats/viability")
def stats_viability(
    period_days: float = Query(default=30, gt=0, le=365),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """The live network's ``NetworkFigures`` over the period, and its scorecard."""
    with rt.reader.connect() as conn:
        nf = figures.network_figures(
            conn, rt.clock(), rt.settings.assignment_ttl_s, rt.settings.token_usd, period_days
        )
    return {"figures": nf.to_dict(), "scorecard": scorecard(nf).to_dict()}
