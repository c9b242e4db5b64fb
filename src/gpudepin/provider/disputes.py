"""The agent's side of a training dispute: answer a bisection query.

The coordinator hands each party a ``bisect`` item through its poll: a step and the
checkpoint both parties agreed on (or none: step 0). The agent replays from there to the
step on the CPU (deterministic, ``workloads.training``) and commits, signed, to the hash
of the state it reaches. An honest agent's answers are the true states, which is why the
referee always sides with it (``core.disputes``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpudepin.client import Client
from gpudepin.workloads import training

log = logging.getLogger("gpudepin.agent")

# (job spec, dataset, checkpoint or None, its step, queried step) -> state hash
StateHash = Callable[[dict[str, Any], Path, Path | None, int, int], str]


def answer_query(
    client: Client, item: dict[str, Any], cache: Path, state_hash: StateHash = training.hash_at
) -> dict[str, Any]:
    """Download what the query replays from, compute the state hash, answer it signed."""
    paths: dict[str, Path] = {}
    for name, sha in item["inputs"].items():
        dest = cache / sha
        if not dest.exists():
            client.download_dispute_input(item["id"], name, dest)
        paths[name] = dest
    ask = item["task_spec"]
    step, anchor = int(ask["step"]), int(ask["anchor_step"])
    sha = state_hash(item["job_spec"], paths["dataset"], paths.get("checkpoint"), anchor, step)
    log.info("dispute %s: state at step %s is %s", item["id"], step, sha[:12])
    return client.dispute_answer(item["id"], step, sha)
