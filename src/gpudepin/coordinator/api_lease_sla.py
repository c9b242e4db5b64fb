"""Route of the lease uptime SLA: ``GET /v1/leases/{id}/sla`` (buyer or provider only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from gpudepin.coordinator import lease_sla
from gpudepin.coordinator.api import caller, runtime
from gpudepin.coordinator.app import Runtime

router = APIRouter(prefix="/v1")


@router.get("/leases/{lease_id}/sla")
def lease_sla_report(
    lease_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Measured uptime against the target, each outage (start, end, duration, source,
    the provider it counts against, its cost) and the credit owed or paid."""
    with rt.reader.connect() as conn:
        return dict(lease_sla.report(conn, lease_id, who, rt.clock(), rt.settings))
