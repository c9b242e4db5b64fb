"""Reproducible training: identical commitments, resumes, replays and tamper detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gpudepin.core.errors import InvalidInput
from gpudepin.workloads import training
from gpudepin.workloads.base import RunContext
from gpudepin.workloads.training import WORKLOAD

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    training.make_digits_npz(folder / "digits.npz")
    training.write_tiny_text(folder / "text.txt")
    return folder


def job(data: Path, folder: Path, spec_text: str, dataset: str = "digits.npz") -> tuple:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.toml").write_text(spec_text)
    inputs = {"spec": folder / "spec.toml", "dataset": data / dataset}
    return WORKLOAD.validate({}, inputs), inputs


def commitments_of(result: Path) -> list[dict]:
    return training.read_result(result)["commitments"]


def test_same_spec_twice_gives_identical_commitments(data: Path, tmp_path: Path) -> None:
    spec, inputs = job(data, tmp_path, training.demo_spec("mlp", steps=300))
    (task,) = WORKLOAD.split(spec)
    first = WORKLOAD.run(spec, task.spec, inputs, RunContext(workdir=tmp_path / "a"))
    second = WORKLOAD.run(spec, task.spec, inputs, RunContext(workdir=tmp_path / "b"))
    ours = commitments_of(first)
    assert [c["step"] for c in ours] == [0, 50, 100, 150, 200, 250, 300]
    assert ours == commitments_of(second)
    assert WORKLOAD.compare(spec, first, second).equal
    losses = training.read_result(first)["losses"]["losses"]
    assert len(losses) == 300 and np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])


def test_a_different_seed_is_caught_at_step_zero(data: Path, tmp_path: Path) -> None:
    spec, inputs = job(data, tmp_path, training.demo_spec("mlp", steps=20, checkpoint_interval=10))
    other = {**spec, "seed": spec["seed"] + 1}
    honest = WORKLOAD.run(spec, {}, inputs, RunContext(workdir=tmp_path / "a"))
    cheat = WORKLOAD.run(other, {}, inputs, RunContext(workdir=tmp_path / "b"))
    verdict = WORKLOAD.compare(spec, honest, cheat)
    assert not verdict.equal
    assert "first at step 0" in verdict.detail


def test_resume_after_a_crash_reaches_the_uninterrupted_commitments(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, inputs = job(data, tmp_path, training.demo_spec("mlp", steps=200, checkpoint_interval=50))
    whole = WORKLOAD.run(spec, {}, inputs, RunContext(workdir=tmp_path / "whole"))

    real_save = training.save_checkpoint

    def dies_at_150(state: training.TrainState, path: Path) -> None:
        if state.step > 100:
            raise RuntimeError("provider lost power")
        real_save(state, path)

    monkeypatch.setattr(training, "save_checkpoint", dies_at_150)
    with pytest.raises(RuntimeError):
        WORKLOAD.run(spec, {}, inputs, RunContext(workdir=tmp_path / "dies"))
    monkeypatch.undo()

    # What the agent streamed before it died: the journal and the checkpoint files.
    journal = tmp_path / "dies" / "train" / "commitments.jsonl"
    published = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [c["step"] for c in published] == [0, 50, 100]
    checkpoint = tmp_path / "dies" / "train" / "checkpoints" / training.checkpoint_name(100)

    resumed = WORKLOAD.run(
        spec,
        {"resume_from": 100, "prior_commitments": published},
        {**inputs, "checkpoint": checkpoint},
        RunContext(workdir=tmp_path / "elsewhere"),
    )
    assert commitments_of(resumed) == commitments_of(whole)
    assert training.read_result(resumed)["losses"]["start_step"] == 100
    assert WORKLOAD.compare(spec, whole, resumed).equal


def test_resume_refuses_a_checkpoint_that_does_not_match_its_commitment(
    data: Path, tmp_path: Path
) -> None:
    spec, inputs = job(data, tmp_path, training.demo_spec("mlp", steps=20, checkpoint_interval=10))
    result = WORKLOAD.run(spec, {}, inputs, RunContext(workdir=tmp_path / "a"))
    published = commitments_of(result)
    wrong = training.extract_checkpoint(result, 20, tmp_path / "ck")  # step 20, claimed as 10
    with pytest.raises(InvalidInput, match="checkpoint"):
        WORKLOAD.run(
            spec,
            {"resume_from": 10, "prior_commitments": published},
            {**inputs, "checkpoint": wrong},
            RunContext(workdir=tmp_path / "b"),
        )


def test_replay_matches_the_commitment_and_a_tampered_checkpoint_does_not(
    data: Path, tmp_path: Path
) -> None:
    spec, inputs = job(data, tmp_path, training.demo_spec("mlp", steps=150, checkpoint_interval=50))
    result = WORKLOAD.run(spec, {}, inputs, RunContext(workdir=tmp_path / "a"))
    published = {c["step"]: c["sha256"] for c in commitments_of(result)}
    checkpoint = training.extract_checkpoint(result, 50, tmp_path / "audit")

    assert training.commitment(training.load_checkpoint(checkpoint)) == published[50]
    assert training.replay_segment(spec, inputs["dataset"], checkpoint, 50, 100) == published[100]

    state = training.load_checkpoint(checkpoint)
    first = sorted(state.model)[0]
    state.model[first] = state.model[first].clone()
    state.model[first].view(-1)[0] += 1e-6
    tampered = tmp_path / "tampered.pt"
    training.save_checkpoint(state, tampered)
    assert training.commitment(training.load_checkpoint(tampered)) != published[50]
    assert training.replay_segment(spec, inputs["dataset"], tampered, 50, 100) != published[100]


def test_single_step_replay_is_what_a_referee_re_executes(data: Path, tmp_path: Path) -> None:
    spec, inputs = job(data, tmp_path, training.demo_spec("mlp", steps=10, checkpoint_interval=10))
    dataset = training.load_dataset(spec, inputs["dataset"])
    state_3, _ = training.train_segment(spec, dataset, None, 0, 3)
    state_4, losses = training.train_segment(spec, dataset, state_3, 3, 4)
    direct_4, _ = training.train_segment(spec, dataset, None, 0, 4)
    assert len(losses) == 1
    assert training.commitment(state_4) == training.commitment(direct_4)
    assert training.commitment(state_3) != training.commitment(state_4)


def test_a_garbage_checkpoint_is_refused(data: Path, tmp_path: Path) -> None:
    spec, inputs = job(data, tmp_path, training.demo_spec("mlp", steps=10, checkpoint_interval=5))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInput, match="checkpoint: cannot read"):
        training.replay_segment(spec, inputs["dataset"], garbage, 5, 10)


@pytest.mark.parametrize(
    ("model", "dataset"), [("cnn", "digits.npz"), ("transformer_lm", "text.txt")]
)
def test_cnn_and_language_model_train_and_reproduce(
    data: Path, tmp_path: Path, model: str, dataset: str
) -> None:
    text = training.demo_spec(model, steps=30, checkpoint_interval=10)
    if model == "transformer_lm":
        text = text.replace("d_model = 32", "d_model = 16").replace("context = 32", "context = 16")
    spec, inputs = job(data, tmp_path, text, dataset)
    first = WORKLOAD.run(spec, {}, inputs, RunContext(workdir=tmp_path / "a"))
    second = WORKLOAD.run(spec, {}, inputs, RunContext(workdir=tmp_path / "b"))
    assert commitments_of(first) == commitments_of(second)
    losses = training.read_result(first)["losses"]["losses"]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_merge_gives_loadable_weights_and_curves(data: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    spec, inputs = job(data, tmp_path, training.demo_spec("mlp", steps=10, checkpoint_interval=5))
    (plan,) = WORKLOAD.split(spec)
    result = WORKLOAD.run(spec, plan.spec, inputs, RunContext(workdir=tmp_path / "a"))
    outputs = WORKLOAD.merge(spec, [(plan, result)], tmp_path / "out")
    names = {p.name for p in outputs}
    assert names == {"training.zip", "weights.safetensors", "losses.json", "commitments.json"}
    weights = load_file(str(tmp_path / "out" / "weights.safetensors"))
    assert weights["net.1.weight"].shape == (64, 64)
    final = training.load_checkpoint(training.extract_checkpoint(result, 10, tmp_path / "ck"))
    assert torch.equal(weights["net.1.weight"], final.model["net.1.weight"])
