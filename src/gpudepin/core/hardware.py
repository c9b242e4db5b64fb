"""The hardware catalog: GPU classes with the figures the market and the proofs need.

Figures come from ``shared/data/market-facts.md`` (late 2026). ``cpu`` is an honest class
of its own, so a machine without a GPU can take work that suits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gpudepin.core.errors import InvalidInput


class Tier(StrEnum):
    CONSUMER = "consumer"
    ENTERPRISE = "enterprise"


@dataclass(frozen=True)
class GpuClass:
    name: str
    vram_gb: float
    fp32_tflops: float
    tdp_watts: int
    wall_watts_loaded: int
    wall_watts_idle: int
    tier: Tier
    median_usd_per_hour: float


CATALOG: dict[str, GpuClass] = {
    g.name: g
    for g in (
        GpuClass("cpu", 0, 0.5, 65, 120, 40, Tier.CONSUMER, 0.02),
        GpuClass("rtx3090", 24, 35.6, 350, 500, 100, Tier.CONSUMER, 0.22),
        GpuClass("rtx4090", 24, 82.6, 450, 600, 100, Tier.CONSUMER, 0.35),
        GpuClass("rtx5090", 32, 104.8, 575, 750, 110, Tier.CONSUMER, 0.54),
        GpuClass("a100-80g", 80, 19.5, 400, 600, 150, Tier.ENTERPRISE, 1.00),
        GpuClass("h100-80g", 80, 67.0, 700, 1275, 300, Tier.ENTERPRISE, 2.00),
    )
}

# Substrings of the names nvidia-smi and torch report, mapped to catalog classes.
_NAME_HINTS = (
    ("h100", "h100-80g"),
    ("a100", "a100-80g"),
    ("5090", "rtx5090"),
    ("4090", "rtx4090"),
    ("3090", "rtx3090"),
)


def gpu_class(name: str) -> GpuClass:
    """The catalog entry for ``name``; unknown names are a clear error."""
    try:
        return CATALOG[name.lower()]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise InvalidInput(f"unknown GPU class {name!r}", hint=f"Known classes: {known}.") from None


def classify(device_name: str) -> str:
    """Map a device name as a driver reports it to a catalog class ('cpu' if unknown)."""
    lowered = device_name.lower()
    for hint, cls in _NAME_HINTS:
        if hint in lowered:
            return cls
    return "cpu"
