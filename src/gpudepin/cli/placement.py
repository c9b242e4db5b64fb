"""Placement options every ``submit`` command shares: residency, tier and deadline."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from gpudepin.core.errors import InvalidInput

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}

# Options shared by every `submit` command that takes placement terms.
Region = Annotated[
    list[str] | None, typer.Option("--region", help="Allowed region (repeatable), e.g. eu-west.")
]
DenyRegion = Annotated[
    list[str] | None, typer.Option("--deny-region", help="Refused region (repeatable).")
]
RequireTag = Annotated[
    list[str] | None,
    typer.Option("--require-tag", help="Jurisdiction the region must be under, e.g. gdpr."),
]
DenyTag = Annotated[
    list[str] | None, typer.Option("--deny-tag", help="Jurisdiction the region must not be under.")
]
Tier = Annotated[str, typer.Option("--tier", help="consumer (best effort) or enterprise (SLA).")]
Deadline = Annotated[
    str | None, typer.Option("--deadline", help="Completion deadline, e.g. 10m (enterprise SLA).")
]


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h`` or ``1d`` in seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise InvalidInput(f"cannot read the duration {text!r}", hint="Write e.g. 90s, 10m or 2h.")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def terms(
    region: list[str] | None,
    deny_region: list[str] | None,
    require_tag: list[str] | None,
    deny_tag: list[str] | None,
    tier: str,
    deadline: str | None,
) -> dict[str, Any]:
    """The keyword arguments of ``Client.submit_job`` for these options."""
    residency = {
        "allow_regions": region or [],
        "deny_regions": deny_region or [],
        "require_tags": require_tag or [],
        "deny_tags": deny_tag or [],
    }
    return {
        "residency": residency if any(residency.values()) else None,
        "tier": tier,
        "deadline_s": parse_duration(deadline) if deadline else None,
    }
