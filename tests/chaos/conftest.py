"""Every test here injects faults into live processes and takes seconds to minutes on a
busy two-core machine: they carry the `chaos` marker, which `scripts/test` leaves out
unless asked (`bash scripts/test -m chaos`); `.ci/run` runs them as a step of their own,
bounded by `timeout 900` (docs/chaos.md)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in str(item.fspath):
            item.add_marker(pytest.mark.chaos)
