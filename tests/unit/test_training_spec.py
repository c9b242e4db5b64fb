"""Training spec validation: every refusal names the field the buyer must fix."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core.errors import InvalidInput
from gpudepin.workloads.training import (
    batch_indices,
    checkpoint_steps,
    demo_spec,
    normalize_spec,
    parse_spec,
)


def arrays(path: Path, rows: int = 40, labels: int | None = None) -> Path:
    np.savez(
        path,
        features=np.zeros((rows, 64), np.float32),
        labels=np.arange(rows if labels is None else labels, dtype=np.int64) % 10,
    )
    return path


def base() -> dict:
    return parse_spec(demo_spec("mlp", steps=100, checkpoint_interval=10))


def test_demo_spec_validates_and_describes_the_dataset(tmp_path: Path) -> None:
    spec = normalize_spec(base(), arrays(tmp_path / "d.npz"))
    assert spec["model"] == {"name": "mlp", "hidden": [64, 32]}
    assert spec["optimizer"]["name"] == "adam" and spec["optimizer"]["lr"] == 0.003
    assert spec["dataset"] == {
        "kind": "arrays",
        "samples": 40,
        "feature_shape": [64],
        "classes": 10,
    }
    assert spec["threads"] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r["optimizer"].update(lr=-0.1), "optimizer.lr"),
        (lambda r: r["optimizer"].update(lr=0), "optimizer.lr"),
        (lambda r: r["optimizer"].pop("lr"), "optimizer.lr"),
        (lambda r: r["optimizer"].update(name="lbfgs"), "optimizer.name"),
        (lambda r: r.update(steps=0), "steps"),
        (lambda r: r.pop("steps"), "steps"),
        (lambda r: r.update(steps=True), "steps"),
        (lambda r: r.update(batch_size=41), "batch_size"),
        (lambda r: r.update(checkpoint_interval=101), "checkpoint_interval"),
        (lambda r: r.update(threads=0), "threads"),
        (lambda r: r.update(seed=-1), "seed"),
        (lambda r: r["model"].update(name="resnet152"), "model.name"),
        (lambda r: r["model"].update(hidden=[0]), "model.hidden"),
        (lambda r: r.pop("model"), "model"),
        (lambda r: r.update(learning_rate=0.1), "learning_rate"),
    ],
)
def test_bad_fields_are_refused_by_name(tmp_path: Path, change, field: str) -> None:
    raw = base()
    change(raw)
    with pytest.raises(InvalidInput) as caught:
        normalize_spec(raw, arrays(tmp_path / "d.npz"))
    assert caught.value.details["field"] == field
    assert caught.value.message.startswith(f"{field}:")


def test_dataset_arrays_of_different_lengths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="features has 40 rows but labels has 39"):
        normalize_spec(base(), arrays(tmp_path / "d.npz", labels=39))


def test_dataset_without_labels_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", features=np.zeros((4, 2), np.float32))
    with pytest.raises(InvalidInput, match="lacks labels"):
        normalize_spec(base(), tmp_path / "d.npz")


def test_cnn_needs_image_shaped_features(tmp_path: Path) -> None:
    raw = parse_spec(demo_spec("cnn"))
    spec = normalize_spec(raw, arrays(tmp_path / "d.npz"))
    assert spec["dataset"]["feature_shape"] == [1, 8, 8]
    np.savez(
        tmp_path / "odd.npz", features=np.zeros((40, 63), np.float32), labels=np.zeros(40, np.int64)
    )
    with pytest.raises(InvalidInput, match="not images"):
        normalize_spec(raw, tmp_path / "odd.npz")


def test_language_model_needs_utf8_text_longer_than_its_context(tmp_path: Path) -> None:
    raw = parse_spec(demo_spec("transformer_lm"))
    (tmp_path / "short.txt").write_text("too short")
    with pytest.raises(InvalidInput, match=r"not longer than model\.context"):
        normalize_spec(raw, tmp_path / "short.txt")
    (tmp_path / "bad.txt").write_bytes(b"\xff" * 100)
    with pytest.raises(InvalidInput, match="not UTF-8"):
        normalize_spec(raw, tmp_path / "bad.txt")
    raw["model"]["heads"] = 5
    (tmp_path / "ok.txt").write_text("x" * 100)
    with pytest.raises(InvalidInput, match=r"model\.heads: 5 does not divide"):
        normalize_spec(raw, tmp_path / "ok.txt")


def test_spec_that_is_not_toml_is_refused() -> None:
    with pytest.raises(InvalidInput, match="spec: not valid TOML"):
        parse_spec("steps = = 3")


@given(
    seed=st.integers(0, 2**32),
    samples=st.integers(1, 50),
    batch=st.integers(1, 50),
    step=st.integers(0, 500),
)
def test_batches_are_a_pure_function_of_seed_and_step(
    seed: int, samples: int, batch: int, step: int
) -> None:
    batch = min(batch, samples)
    first = batch_indices(seed, samples, batch, step)
    assert np.array_equal(first, batch_indices(seed, samples, batch, step))
    assert ((first >= 0) & (first < samples)).all()


@given(seed=st.integers(0, 2**32), samples=st.integers(1, 30))
def test_each_epoch_visits_every_sample_once(seed: int, samples: int) -> None:
    # With a batch of one, steps epoch*n .. epoch*n + n - 1 are exactly one epoch.
    epoch = np.concatenate(
        [batch_indices(seed, samples, 1, s) for s in range(samples, 2 * samples)]
    )
    assert sorted(epoch.tolist()) == list(range(samples))


@given(steps=st.integers(1, 300), interval=st.integers(1, 300))
def test_checkpoints_start_at_zero_and_end_at_the_last_step(steps: int, interval: int) -> None:
    interval = min(interval, steps)
    marks = checkpoint_steps({"steps": steps, "checkpoint_interval": interval})
    assert marks[0] == 0 and marks[-1] == steps
    assert all(b - a <= interval for a, b in itertools.pairwise(marks))
