"""Workloads chosen by name; heavy engines are imported only when a workload is used."""

from __future__ import annotations

import importlib

from gpudepin.core.errors import InvalidInput
from gpudepin.workloads.base import Workload

_MODULES = {
    "render": "gpudepin.workloads.render",
    "infer": "gpudepin.workloads.inference",
    "train": "gpudepin.workloads.training",
    # trivial tasks for tests, chaos runs and load benchmarks (see workloads/echo.py)
    "echo": "gpudepin.workloads.echo",
}


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> Workload:
    """The workload for job kind ``name`` (each module exposes ``WORKLOAD``)."""
    try:
        module = importlib.import_module(_MODULES[name])
    except KeyError:
        raise InvalidInput(
            f"unknown job kind {name!r}", hint=f"Known kinds: {', '.join(names())}."
        ) from None
    workload: Workload = module.WORKLOAD
    return workload
