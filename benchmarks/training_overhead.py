"""Training: the same steps run directly, as a verifiable task, and through the network.

* ``direct``: ``train_segment`` over every step with no checkpoints (what a buyer runs on
  their own machine with the same seed and threads);
* ``task``: the workload's ``run``, which also commits the state every
  ``checkpoint_interval`` steps, keeps the checkpoints and packs the result;
* ``through_network``: submitted to a local network (one agent) and fetched back.

Both local runs must end at the same commitment; the script checks it.

    python3 benchmarks/training_overhead.py                 # 15 s of training
    python3 benchmarks/training_overhead.py --seconds 60
    python3 benchmarks/training_overhead.py --quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from gpudepin.workloads import training
from gpudepin.workloads.base import RunContext

SPEC = """\
steps = {steps}
batch_size = 32
seed = 7
checkpoint_interval = {interval}
threads = 1

[model]
name = "transformer_lm"
d_model = 64
layers = 2
heads = 4
context = 64

[optimizer]
name = "adam"
lr = 0.001
"""


def through_network(spec_path: Path, dataset: Path, root: Path) -> tuple[Path, float]:
    """``submit train SPEC --dataset DATA`` on a local network (one agent), wait, download.

    Returns the result archive and the wall seconds from submit (uploads included) to
    download; starting the network and the agent is not counted.
    """
    from _ai_network import local_network, run_job

    with local_network(root / "train") as (_, buyer):
        started = time.perf_counter()
        files = run_job(buyer, "train", {}, {"spec": spec_path, "dataset": dataset}, root / "out")
        return next(
            f for f in files if f.name == training.RESULT_NAME
        ), time.perf_counter() - started


def job(root: Path, steps: int, interval: int) -> tuple[dict[str, Any], dict[str, Path]]:
    (root / "spec.toml").write_text(SPEC.format(steps=steps, interval=interval))
    inputs = {"spec": root / "spec.toml", "dataset": training.write_tiny_text(root / "text.txt")}
    return training.WORKLOAD.validate({}, inputs), inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="length of the direct run (60: the target's)"
    )
    parser.add_argument("--no-network", action="store_true", help="only the local runs")
    parser.add_argument("--checkpoints", type=int, default=20, help="checkpoints per run")
    parser.add_argument("--rounds", type=int, default=2, help="direct/task pairs to run")
    parser.add_argument("--quick", action="store_true", help="about 3 s of training")
    args = parser.parse_args()
    target = 3.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        probe, _ = job(root, 20, 20)
        dataset = training.load_dataset(probe, root / "text.txt")
        training.train_segment(probe, dataset, None, 0, 5)  # imports and first-call costs
        started = time.perf_counter()
        training.train_segment(probe, dataset, None, 0, 20)
        steps = max(20, int(20 * target / (time.perf_counter() - started)))
        interval = max(1, steps // args.checkpoints)
        spec, inputs = job(root, steps, interval)

        # Alternate the two runs and keep each one's best time, so that drift of the
        # machine's speed during the benchmark does not land on one side only.
        direct_s = task_s = float("inf")
        for round_ in range(args.rounds):
            started = time.perf_counter()
            final, _ = training.train_segment(spec, dataset, None, 0, steps)
            direct_s = min(direct_s, time.perf_counter() - started)
            started = time.perf_counter()
            result = training.WORKLOAD.run(spec, {}, inputs, RunContext(root / f"task{round_}"))
            task_s = min(task_s, time.perf_counter() - started)

        published = training.read_result(result)["commitments"]
        print(
            f"transformer_lm d64 x2 layers ctx64, {steps} steps, checkpoint every {interval}, "
            f"best of {args.rounds} alternating rounds"
        )
        print(f"{'direct':<32} {direct_s:8.2f} s")
        print(f"{'task (commit + checkpoints)':<32} {task_s:8.2f} s  ratio {task_s / direct_s:.3f}")
        print(f"same final commitment: {published[-1]['sha256'] == training.commitment(final)}")
        print(f"result archive: {result.stat().st_size / 1e6:.1f} MB, {len(published)} commitments")
        if args.no_network:
            return
        archive, network_s = through_network(inputs["spec"], inputs["dataset"], root)
        ratio = network_s / direct_s
        print(f"{'through the network, 1 agent':<32} {network_s:8.2f} s  ratio {ratio:.3f}")
        network_commitments = training.read_result(archive)["commitments"]
        print(f"network run publishes the same commitments: {network_commitments == published}")


if __name__ == "__main__":
    main()
