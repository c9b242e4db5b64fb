"""TEST AND BENCHMARK USE ONLY: the ``fake-training`` cheat of ``provider.malicious``.

It trains honestly up to step ``HONEST_STEPS`` and then skips every later step, relabelling
the state it has as each later step; it commits to (and packs checkpoints of) that fake run
and, asked in a dispute, answers consistently with it. The commitments look as valid as
any; only a replay of a segment after ``HONEST_STEPS`` and the bisection expose it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpudepin.workloads import training

HONEST_STEPS = 1  # the cheat saves everything after this


def fake_state(
    spec: dict[str, Any], dataset: Path, checkpoint: Path | None, anchor: int, step: int
) -> training.TrainState:
    """The fake run's state at ``step``, reached from its state at ``anchor``."""
    real_end = max(anchor, min(step, HONEST_STEPS))
    state = training.state_at(spec, dataset, checkpoint, anchor, real_end)
    return training.TrainState(step, state.model, state.optimizer)


def fake_hash(
    spec: dict[str, Any], dataset: Path, checkpoint: Path | None, anchor: int, step: int
) -> str:
    """The answer the cheat gives to a bisection query."""
    return training.commitment(fake_state(spec, dataset, checkpoint, anchor, step))


def fake_result(
    spec: dict[str, Any], task: dict[str, Any], inputs: dict[str, Path], out_dir: Path
) -> Path:
    """A result archive of the fake run for a training task or a segment check."""
    checkpoint = inputs.get("checkpoint")
    anchor = int(task.get("resume_from", 0)) if checkpoint is not None else 0
    end = int(task.get("end_step", spec["steps"]))
    steps = [s for s in training.checkpoint_steps(spec) if anchor <= s <= end]
    ckpt_dir = out_dir / "fake"
    files: dict[str, bytes | Path] = {}
    commitments = []
    state = None
    for s in steps:
        state = fake_state(spec, inputs["dataset"], checkpoint, anchor, s)
        path = ckpt_dir / training.checkpoint_name(s)
        training.save_checkpoint(state, path)
        files[f"{training.CHECKPOINT_DIR}/{path.name}"] = path
        commitments.append({"step": s, "sha256": training.commitment(state)})
    assert state is not None
    files |= {
        "weights.safetensors": training._weights_bytes(state.model),
        "losses.json": training._json({"start_step": anchor, "losses": []}),
        "commitments.json": training._json(commitments),
        "manifest.json": json.dumps({"spec": spec, "start_step": anchor, "end_step": end}).encode(),
    }
    dest = out_dir / training.RESULT_NAME
    training._pack(dest, files)
    return dest
