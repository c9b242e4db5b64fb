"""The process a provider agent starts to run one task of any workload.

    python3 -m gpudepin.workloads.runner --kind render --spec job_spec.json \
        --task task_spec.json --input scene=/path/scene.blend --workdir DIR \
        [--device cpu|cuda] [--threads N]

``--spec`` holds the job spec ``validate`` returned, ``--task`` the task's
``TaskPlan.spec``. On success it prints exactly one JSON line,
``{"result": "<path>", "seconds": <float>}``, and exits 0; on failure one line
``{"error": "<readable message>", "code": "<error code>"}`` and exits 1. Engines'
own chatter never reaches stdout, so the agent can parse it without guessing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from gpudepin.core.errors import GpudepinError, InvalidInput
from gpudepin.workloads import registry
from gpudepin.workloads.base import RunContext


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{what}: cannot read JSON from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{what}: {path} must hold a JSON object")
    return data


def _inputs(pairs: list[str]) -> dict[str, Path]:
    inputs: dict[str, Path] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise InvalidInput(f"--input: expected NAME=PATH, got {pair!r}")
        inputs[name] = Path(value).resolve()
    return inputs


class _Parser(argparse.ArgumentParser):
    """Bad arguments become an ``InvalidInput`` so they too come out as the JSON line."""

    def error(self, message: str) -> NoReturn:
        raise InvalidInput(f"runner: {message}", hint=" ".join(self.format_usage().split()))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python3 -m gpudepin.workloads.runner", description="Run one task of a job."
    )
    parser.add_argument("--kind", required=True, help=f"one of {', '.join(registry.names())}")
    parser.add_argument("--spec", required=True, type=Path, help="job spec JSON file")
    parser.add_argument("--task", required=True, type=Path, help="task spec JSON file")
    parser.add_argument("--input", action="append", default=[], help="NAME=PATH, repeatable")
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    return parser


def run_task(argv: list[str]) -> dict[str, Any]:
    """Run the task the command line describes; return the JSON object to print."""
    args = _parser().parse_args(argv)
    workload = registry.get(args.kind)
    spec = _read_json(args.spec, "--spec")
    task = _read_json(args.task, "--task")
    ctx = RunContext(workdir=args.workdir.resolve(), device=args.device, threads=args.threads)
    started = time.perf_counter()
    result = workload.run(spec, task, _inputs(args.input), ctx)
    return {"result": str(result), "seconds": round(time.perf_counter() - started, 3)}


def outcome(argv: list[str]) -> dict[str, Any]:
    """Run a task and return the one JSON object that describes how it went."""
    try:
        return run_task(argv)
    except GpudepinError as exc:
        message = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
        return {"error": message, "code": exc.code}
    except KeyError as exc:
        return {"error": f"the job or task spec lacks the field {exc}", "code": "internal"}
    except Exception as exc:
        # The agent shows this line to people: one readable sentence, no traceback.
        return {"error": f"{type(exc).__name__}: {exc}", "code": "internal"}


def main(argv: list[str] | None = None) -> int:
    """Entry point: print one JSON line and return the exit status."""
    line = outcome(sys.argv[1:] if argv is None else argv)
    print(json.dumps(line), flush=True)
    return 1 if "error" in line else 0


if __name__ == "__main__":
    sys.exit(main())
