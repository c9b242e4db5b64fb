"""Sampled audits on the network: what part of an inference task a check re-runs, and
which tolerance compares two parties' results.

The rules are ``gpudepin.core.audit_sampling``'s. The planner (``verification.plan_cases``)
asks ``audit_spec`` for the check's task spec: for batch inference, the task's row range
plus a ``"sample"`` of rows drawn from the case's seeded generator, so a run replays. The
verification duty asks ``compare_spec`` for the spec that compares two parties, with the
tolerance of the model and of the pair's device classes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from gpudepin.coordinator import db
from gpudepin.core import audit_sampling as AS

SAMPLED_KINDS = ("infer",)
# the coordinator referees on its own CPU (``verification_duty.referee_locally``)
REFEREE_CLASS = "cpu"


def audit_spec(job: Any, task: Any, rng: random.Random) -> tuple[dict[str, Any], str] | None:
    """The check's task spec and what it re-runs, for a workload audited by sampled rows
    (None for the others: they keep their own rule)."""
    if job.kind not in SAMPLED_KINDS:
        return None
    start, end = int(task.spec["start"]), int(task.spec["end"])
    rows = AS.sample_rows(start, end, rng)
    listed = ", ".join(map(str, rows))
    return dict(task.spec, sample=list(rows)), (
        f"{len(rows)} of {end - start} rows sampled ({listed})"
    )


def check_pay(price: int, check_spec: dict[str, Any] | None) -> int:
    """What a checker whose result agreed earns: the task's price for a full re-run, the
    sampled share of it (rounded up) for a sampled audit."""
    if not check_spec or "sample" not in check_spec:
        return price
    rows = int(check_spec["end"]) - int(check_spec["start"])
    return -(-price * len(check_spec["sample"]) // rows)


def compare_spec(kind: str, spec: dict[str, Any], class_a: str, class_b: str) -> dict[str, Any]:
    """The job spec to compare results made on device classes ``class_a`` and ``class_b``:
    for inference its tolerance comes from the table (``AS.tolerance_for``)."""
    if kind not in SAMPLED_KINDS:
        return spec
    asked = spec.get("tolerance")
    requested = None
    if isinstance(asked, dict) and {"atol", "rtol", "min_cosine"} <= set(asked):
        requested = AS.Tolerance(
            float(asked["atol"]), float(asked["rtol"]), float(asked["min_cosine"])
        )
    tol = AS.tolerance_for(str(spec.get("model", "onnx")), class_a, class_b, requested)
    return dict(spec, tolerance={"atol": tol.atol, "rtol": tol.rtol, "min_cosine": tol.min_cosine})


def device_classes(conn: Connection, parties: Iterable[str]) -> dict[str, str]:
    """Each party's device class; a party that is no provider (the coordinator as
    referee) runs on the CPU."""
    wanted = list(dict.fromkeys(parties))
    q = select(db.providers.c.address, db.providers.c.gpu_class).where(
        db.providers.c.address.in_(wanted)
    )
    found = {row.address: row.gpu_class for row in conn.execute(q)}
    return {p: found.get(p, REFEREE_CLASS) for p in wanted}
