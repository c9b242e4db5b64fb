"""The agent's side of a hardware proof: solve the challenge, commit, open the rows asked."""

from __future__ import annotations

import logging
from typing import Any

from gpudepin.client import Client

log = logging.getLogger("gpudepin.agent")


def answer_challenge(client: Client, task: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Run the challenge ``task`` (a ``hwproof`` task from the poll); returns the verdict."""
    from gpudepin.verification.hwproof import answer_spot_queries, make_challenge, solve

    spec = task["task_spec"]
    solution = solve(make_challenge(int(spec["seed"]), int(spec["n"])), device)
    rows = client.hwproof_commit(task["id"], solution.commitment)
    answers = [a.to_json() for a in answer_spot_queries(solution.product, rows)]
    verdict = client.hwproof_answer(task["id"], answers)
    log.info("hardware proof: %s (%s)", verdict["outcome"], verdict["detail"])
    return verdict
