"""TEST AND BENCHMARK USE ONLY: a provider agent that cheats in chosen ways.

The trust layer's tests run it next to honest agents to show that every cheat is caught,
slashed and refunded. It is never started by ``gpudepin up`` or the CLI. Start it like
an agent::

    python3 -m gpudepin.provider.malicious --coordinator URL --home HOME --key NAME \\
        --behaviour blank [--operator OP --region R]

Behaviours: ``blank`` / ``random`` frames; ``fewer-samples`` (renders at 1/8 of the
samples); ``random-embeddings`` (replaces inference outputs, ``.npy`` embeddings or
``.npz`` model outputs, with noise); ``fake-h100`` (claims an H100 and fabricates its
hardware proof); ``replay`` (resubmits its first result, an old signed receipt, for
every later task); ``collude`` (a wrong frame derived
from the task alone, so two colluders of one operator return the same wrong answer);
``lazy-auditor`` (honest on tasks, returns blank frames for the checks it is sent);
``fake-training`` (skips training steps after the first, as provider and as auditor,
and answers disputes consistently with its fake run: ``provider.fake_training``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from gpudepin.client import Client
from gpudepin.identity import load_or_create_key
from gpudepin.provider.agent import Agent, AgentConfig
from gpudepin.provider.bidder import MarketConfig

BEHAVIOURS = (
    "blank",
    "random",
    "fewer-samples",
    "random-embeddings",
    "fake-h100",
    "replay",
    "collude",
    "lazy-auditor",
    "fake-training",
)


def _png(path: Path, width: int, height: int, seed: int | None) -> Path:
    import numpy as np
    from PIL import Image

    if seed is None:
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
    else:
        pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def fake_frame(behaviour: str, task: dict[str, Any], out_dir: Path) -> Path:
    """A frame rendered by nobody: black (``blank``, ``lazy-auditor``), noise seeded by the
    task id (``random``) or by the task's label, the same for every colluder (``collude``)."""
    spec = task["job_spec"]
    seed: int | None = None
    if behaviour == "random":
        seed = int.from_bytes(hashlib.sha256(task["id"].encode()).digest()[:4], "big")
    if behaviour == "collude":
        seed = int.from_bytes(hashlib.sha256(task["label"].encode()).digest()[:4], "big")
    return _png(out_dir / "frame.png", spec["width"], spec["height"], seed)


def fewer_samples(spec: dict[str, Any]) -> dict[str, Any]:
    """The job spec a ``fewer-samples`` cheat renders: 1/8 of the samples the buyer paid for."""
    return dict(spec, samples=max(1, int(spec.get("samples", 16)) // 8))


def noise_outputs(result: Path) -> None:
    """Overwrite inference outputs (``.npy`` embeddings or an ``.npz`` of model outputs)
    with noise of the same shapes and types, as ``random-embeddings`` does."""
    import numpy as np

    rng = np.random.default_rng(0)

    def noise(real: Any) -> Any:
        if not np.issubdtype(real.dtype, np.floating):
            return real
        return rng.standard_normal(real.shape).astype(real.dtype)

    if result.suffix == ".npy":
        np.save(result, noise(np.load(result)))
    elif result.suffix == ".npz":
        with np.load(result) as archive:
            arrays = {name: noise(archive[name]) for name in archive.files}
        save: Any = np.savez  # numpy's stubs type **kwds as its allow_pickle flag
        save(result, **arrays)


class MaliciousAgent(Agent):
    """An ``Agent`` whose results (or hardware proof) are wrong on purpose."""

    def __init__(self, *args: Any, behaviour: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.behaviour = behaviour
        self._task: dict[str, Any] = {}
        self._first_result: Path | None = None

    def _run_task(self, task: dict[str, Any]) -> None:
        self._task = task
        super()._run_task(task)

    def _prove_hardware(self, task: dict[str, Any]) -> None:
        if self.behaviour != "fake-h100":
            super()._prove_hardware(task)
            return
        import numpy as np

        # commit to nothing computed and open rows of noise: far faster than an H100
        commitment = hashlib.sha256(b"no product").hexdigest()
        rows = self.client.hwproof_commit(task["id"], commitment)
        n = int(task["task_spec"]["n"])
        answers = [
            {"row": r, "values": np.zeros(n, dtype=np.float32).tolist(), "path": []} for r in rows
        ]
        self.client.hwproof_answer(task["id"], answers)

    def _execute(self, cmd: list[str]) -> dict[str, Any]:
        task, b = self._task, self.behaviour
        is_check = bool(task.get("check"))
        cheat = (b == "lazy-auditor") == is_check
        out_dir = Path(cmd[cmd.index("--workdir") + 1])
        out_dir.mkdir(parents=True, exist_ok=True)
        if b == "fake-training" and task.get("kind") == "train":
            return {"result": str(self._fake_training(cmd, out_dir)), "seconds": 0.01}
        if cheat and b in ("blank", "random", "collude", "lazy-auditor"):
            return {"result": str(fake_frame(b, task, out_dir)), "seconds": 0.01}
        if cheat and b == "replay" and self._first_result is not None:
            return {"result": str(self._first_result), "seconds": 0.01}
        if cheat and b == "fewer-samples":
            job_file = Path(cmd[cmd.index("--spec") + 1])
            job_file.write_text(json.dumps(fewer_samples(task["job_spec"])))
        outcome = super()._execute(cmd)
        if "result" not in outcome:
            return outcome
        result = Path(outcome["result"])
        if cheat and b == "random-embeddings":
            noise_outputs(result)
        if b == "replay" and self._first_result is None and not is_check:
            self._first_result = self.workdir / "first-result" / result.name
            self._first_result.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(result, self._first_result)
        return outcome

    def _fake_training(self, cmd: list[str], out_dir: Path) -> Path:
        from gpudepin.provider.fake_training import fake_result

        pairs = [cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--input"]
        inputs = {name: Path(path) for name, path in pairs}
        task_spec = json.loads(Path(cmd[cmd.index("--task") + 1]).read_text())
        return fake_result(self._task["job_spec"], task_spec, inputs, out_dir)

    def bisection_hash(self) -> Any:
        if self.behaviour != "fake-training":
            return super().bisection_hash()
        from gpudepin.provider.fake_training import fake_hash

        return fake_hash


def main(argv: list[str] | None = None) -> int:
    from gpudepin.provider.agent import run_agent_with
    from gpudepin.provider.hardware import detect

    p = argparse.ArgumentParser(description="TEST ONLY: a cheating provider agent.")
    p.add_argument("--coordinator", required=True)
    p.add_argument("--home", required=True, type=Path)
    p.add_argument("--key", required=True)
    p.add_argument("--behaviour", required=True, choices=BEHAVIOURS)
    p.add_argument("--name", default=None)
    p.add_argument("--operator", default="")
    p.add_argument("--region", default="local")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    hardware = detect()
    if args.behaviour == "fake-h100":
        hardware |= {"gpu_class": "h100-80g", "gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}
    client = Client(args.coordinator, load_or_create_key(args.home, args.key))
    workdir = args.home / "agents" / args.key
    workdir.mkdir(parents=True, exist_ok=True)
    # cheaters bid in the market like honest agents, at cost: winning work is how they cheat
    cfg = AgentConfig(
        name=args.name or args.key,
        region=args.region,
        operator=args.operator,
        market=MarketConfig(),
    )
    agent = MaliciousAgent(client, cfg, hardware, workdir, behaviour=args.behaviour)
    run_agent_with(agent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
