"""``/v1`` routes of the enterprise tier: a job's audit log and providers' standing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from gpudepin.coordinator import enterprise, service
from gpudepin.coordinator.api import caller, runtime
from gpudepin.coordinator.app import Runtime
from gpudepin.core.money import format_amount
from gpudepin.core.placement import enterprise_eligible

router = APIRouter(prefix="/v1")


@router.get("/jobs/{job_id}/audit")
def job_audit(
    job_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Which provider, region and hardware ran every task, when, and where data is kept."""
    with rt.reader.connect() as conn:
        return enterprise.audit(conn, service.get_job(conn, job_id, viewer=who))


@router.get("/providers/standing")
def standing(rt: Runtime = Depends(runtime)) -> list[dict[str, Any]]:
    """Each provider's enterprise standing now: proof, stake, 30-day uptime, reasons."""
    params = enterprise.enterprise_params(rt.settings)
    with rt.reader.connect() as conn:
        found = enterprise.profiles(conn, rt.settings, rt.clock())
    return [
        {
            "address": p.address,
            "region": p.region,
            "operator": p.operator,
            "hardware_proven": p.hardware_proven,
            "stake": format_amount(p.stake),
            "uptime_30d": p.uptime_30d,
            "enterprise_reasons": enterprise_eligible(p, params),
        }
        for p in found
    ]
