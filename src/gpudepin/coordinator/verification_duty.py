"""The verification duty: plan audits, compare results, decide, release held pay.

File work (decoding frames, a local re-run) happens outside database transactions;
each decision is then applied in one transaction of its own.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpudepin.coordinator import hwproofs, verification, verification_sampling
from gpudepin.core import verification as V
from gpudepin.core.errors import GpudepinError
from gpudepin.workloads import registry
from gpudepin.workloads.base import RunContext

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime

log = logging.getLogger("gpudepin.verification")


def verification_duty(rt: Runtime) -> None:
    """One pass of the trust layer's periodic work."""
    s = rt.settings
    now = rt.clock()
    with rt.engine.begin() as conn:
        verification.expire_checks(conn, now)
        planned = verification.plan_cases(conn, s, now)
        verification.release_due(conn, now, s.hold_window_s)
        verification.release_unbonded(conn, now)
        if s.hwproof_every_s > 0:
            hwproofs.schedule_due(conn, now, s)
    if planned:
        rt.notify_work()
    with rt.reader.connect() as conn:
        ready = verification.ready_cases(conn)
        known = verification.known_answers_done(conn)
        stuck = verification.stuck_for_referee(conn) if s.referee_local else []
    outcomes = [decide(rt, case_id) for case_id in ready]
    if "escalated" in outcomes:  # find referees now rather than a pass later
        with rt.engine.begin() as conn:
            verification.plan_cases(conn, s, rt.clock())
    if outcomes:
        rt.notify_work()  # a referee's check, or a rejected task back in the queue
    for chk in known:
        judge_known_answer(rt, chk)
    for case_id in stuck:
        referee_locally(rt, case_id)


def _agreement(
    rt: Runtime,
    spec: dict[str, Any],
    kind: str,
    paths: dict[str, Path],
    classes: dict[str, str],
) -> Any:
    workload = registry.get(kind)
    cache: dict[tuple[str, str], bool] = {}
    details: dict[str, str] = {}

    def agree(a: str, b: str) -> bool:
        key = (min(a, b), max(a, b))
        if key not in cache:
            try:
                # the tolerance depends on the pair's device classes (exact within one)
                pair = verification_sampling.compare_spec(kind, spec, classes[a], classes[b])
                cmp = workload.compare(pair, paths[a], paths[b])
                cache[key], details[f"{key[0]} vs {key[1]}"] = cmp.equal, cmp.detail
            except Exception as exc:  # a result nobody can read agrees with nothing
                cache[key], details[f"{key[0]} vs {key[1]}"] = False, f"unreadable: {exc}"
        return cache[key]

    return agree, details


def decide(rt: Runtime, case_id: str) -> str:
    """Compare a case's results with the workload's rule and apply ``adjudicate``."""
    from gpudepin.coordinator.disputes_duty import decide_segment

    segment = decide_segment(rt, case_id)  # training: segment replay, then bisection
    if segment is not None:
        return segment
    with rt.reader.connect() as conn:
        case, job, done = verification.case_inputs(conn, case_id)
        classes = verification_sampling.device_classes(
            conn, [case.provider, *(c.checker for c in done)]
        )
    paths = {case.provider: rt.blobs.open_path(case.result_sha256)}
    paths |= {c.checker: rt.blobs.open_path(c.result_sha256) for c in done}
    agree, details = _agreement(rt, job.spec, job.kind, paths, classes)
    decision = V.adjudicate(case.provider, [c.checker for c in done], agree)
    with rt.engine.begin() as conn:
        return verification.apply_decision(
            conn, rt.settings, case_id, decision, details, rt.clock()
        )


def judge_known_answer(rt: Runtime, chk: Any) -> None:
    """A known-answer check passes when the auditor reproduced the verified result."""
    with rt.reader.connect() as conn:
        case, job, _ = verification.case_inputs(conn, chk.case_id)
        of = verification_sampling.device_classes(conn, [case.provider, chk.checker])
    paths = {
        "known": rt.blobs.open_path(case.result_sha256),
        "auditor": rt.blobs.open_path(chk.result_sha256),
    }
    classes = {"known": of[case.provider], "auditor": of[chk.checker]}
    agree, _ = _agreement(rt, job.spec, job.kind, paths, classes)
    with rt.engine.begin() as conn:
        verification.apply_known_answer(conn, chk.id, agree("known", "auditor"), rt.clock())


def referee_locally(rt: Runtime, case_id: str) -> None:
    """No third provider is eligible: the coordinator re-runs the check itself."""
    with rt.reader.connect() as conn:
        case, job, _ = verification.case_inputs(conn, case_id)
    sha: str | None = None
    try:
        workload = registry.get(job.kind)
        inputs = {name: rt.blobs.open_path(h) for name, h in job.inputs.items()}
        with tempfile.TemporaryDirectory(dir=rt.blobs.root) as tmp:
            out = workload.run(job.spec, case.spec, inputs, RunContext(Path(tmp) / "out"))
            sha, _ = rt.blobs.put_file(out)
    except (GpudepinError, OSError, RuntimeError) as exc:
        log.warning("cannot referee %s here: %s", case_id, exc)
    with rt.engine.begin() as conn:
        verification.add_local_result(conn, case_id, sha, rt.clock())
