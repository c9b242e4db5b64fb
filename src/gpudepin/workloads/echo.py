"""``echo``: a trivial workload for tests, chaos runs and load benchmarks — not for buyers.

Each task writes a small, predictable text file (``echo <job-seed> <index>`` padded to
``bytes``), optionally after sleeping ``sleep_s`` seconds, so tests can measure the
network itself (dispatch, retries, races, payouts) without an engine's cost or noise.
Because the expected bytes follow from the spec, the coordinator checks every result
exactly, and a wrong or truncated one is rejected like a bad render.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gpudepin.core.errors import InvalidInput
from gpudepin.workloads.base import Comparison, RunContext, TaskPlan

MAX_TASKS = 100_000
MAX_BYTES = 64 * 1024 * 1024


def expected(spec: dict[str, Any], task: dict[str, Any]) -> bytes:
    """The exact bytes a correct run of ``task`` produces."""
    head = f"echo {spec['seed']} {task['index']}\n".encode()
    size = max(int(spec.get("bytes", 0)), len(head))
    return head + b"." * (size - len(head))


def _differs(task: dict[str, Any]) -> str:
    return f"echo {task['index']}: result differs from the expected bytes"


def _int(params: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")
    return value


class EchoWorkload:
    name = "echo"
    input_names: tuple[str, ...] = ()

    def validate(self, params: dict[str, Any], inputs: dict[str, Path]) -> dict[str, Any]:
        unknown = set(params) - {"tasks", "sleep_s", "bytes", "seed"}
        if unknown:
            raise InvalidInput(f"echo: unknown parameter(s) {', '.join(sorted(unknown))}")
        sleep_s = params.get("sleep_s", 0.0)
        if isinstance(sleep_s, bool) or not isinstance(sleep_s, int | float):
            raise InvalidInput(f"sleep_s: expected seconds, got {sleep_s!r}")
        if not 0 <= sleep_s <= 60:
            raise InvalidInput(f"sleep_s: expected 0 to 60 seconds, got {sleep_s}")
        return {
            "tasks": _int(params, "tasks", 1, 1, MAX_TASKS),
            "sleep_s": float(sleep_s),
            "bytes": _int(params, "bytes", 0, 0, MAX_BYTES),
            "seed": _int(params, "seed", 0, 0, 2**31),
        }

    def split(self, spec: dict[str, Any]) -> list[TaskPlan]:
        return [TaskPlan(f"echo {i}", {"index": i}) for i in range(spec["tasks"])]

    def run(
        self, spec: dict[str, Any], task: dict[str, Any], inputs: dict[str, Path], ctx: RunContext
    ) -> Path:
        if spec["sleep_s"]:
            time.sleep(spec["sleep_s"])  # stands in for real work of that length
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        out = ctx.workdir / f"echo-{task['index']}.txt"
        out.write_bytes(expected(spec, task))
        return out

    def check_result(self, spec: dict[str, Any], task: dict[str, Any], path: Path) -> str | None:
        """Reject anything but the exact expected bytes."""
        if path.stat().st_size != len(expected(spec, task)):  # never read a huge wrong one
            return _differs(task)
        return self.check_bytes(spec, task, path.read_bytes())

    def check_bytes(self, spec: dict[str, Any], task: dict[str, Any], data: bytes) -> str | None:
        """``check_result`` of a result handed in inline, on its bytes."""
        return _differs(task) if data != expected(spec, task) else None

    def compare(self, spec: dict[str, Any], a: Path, b: Path) -> Comparison:
        same = a.read_bytes() == b.read_bytes()
        return Comparison(same, 1.0 if same else 0.0)

    def merge(
        self, spec: dict[str, Any], results: list[tuple[TaskPlan, Path]], dest: Path
    ) -> list[Path]:
        out = dest / "echo.txt"
        with out.open("wb") as fh:
            for _plan, path in results:
                fh.write(path.read_bytes())
        return [out]

    def merge_bytes(
        self, spec: dict[str, Any], results: list[tuple[TaskPlan, bytes]], dest: Path
    ) -> list[Path]:
        """``merge`` of results handed in inline, on their bytes."""
        out = dest / "echo.txt"
        out.write_bytes(b"".join(data for _plan, data in results))
        return [out]


WORKLOAD = EchoWorkload()
