"""The shape every workload has, and the values that pass between its steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class TaskPlan:
    """One unit of work: a label people read (``frame 7``) and a JSON-able spec."""

    label: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class Comparison:
    """The verdict of comparing two results of the same task."""

    equal: bool
    score: float  # 1.0 is identical; meaning per workload (PSNR-based, cosine, ...)
    detail: str = ""


@dataclass(frozen=True)
class RunContext:
    """What the provider's runner knows when it runs a task."""

    workdir: Path
    device: str = "cpu"  # "cpu" or "cuda"
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class Workload(Protocol):
    """Every workload has these; it may also have ``check_result(spec, task, path) -> str |
    None``, a cheap sanity check the coordinator runs when a result is submitted (the
    returned string is the reason to reject it).

    A workload of tiny results may also take them as bytes: ``check_bytes(spec, task,
    data)`` and ``merge_bytes(spec, [(plan, data), ...], dest)``, doing what
    ``check_result`` and ``merge`` do. The coordinator keeps results handed in inline in
    its database, and with these it never writes them out as files."""

    name: str
    # the names of the files a job of this kind takes, e.g. ("scene",)
    input_names: tuple[str, ...]

    def validate(self, params: dict[str, Any], inputs: dict[str, Path]) -> dict[str, Any]:
        """Check parameters and input files; return the normalised job spec or raise
        ``InvalidInput`` naming the field and what was expected."""
        ...

    def split(self, spec: dict[str, Any]) -> list[TaskPlan]:
        """Cut the job into tasks (pure given the spec)."""
        ...

    def run(
        self, spec: dict[str, Any], task: dict[str, Any], inputs: dict[str, Path], ctx: RunContext
    ) -> Path:
        """Run one task; return the path of its single result file inside ``ctx.workdir``."""
        ...

    def compare(self, spec: dict[str, Any], a: Path, b: Path) -> Comparison:
        """Compare two results of the same task (decoded content, never raw bytes)."""
        ...

    def merge(
        self, spec: dict[str, Any], results: list[tuple[TaskPlan, Path]], dest: Path
    ) -> list[Path]:
        """Assemble accepted task results, in task order, into the job's output files."""
        ...
