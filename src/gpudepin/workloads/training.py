"""Reproducible training from a declarative spec, with commitments any machine can replay.

A job is a TOML spec (no buyer code) plus a dataset: an ``.npz`` with ``features`` and
``labels`` for the ``mlp`` and ``cnn`` models, a UTF-8 text file for ``transformer_lm``::

    steps = 300
    batch_size = 32
    seed = 7
    checkpoint_interval = 50
    threads = 1            # intra-op threads: weights differ between 1 and 2

    [model]
    name = "mlp"           # mlp (hidden) | cnn (channels) | transformer_lm
    hidden = [64, 32]      # (d_model, layers, heads, context)

    [optimizer]
    name = "adam"          # adam | sgd (momentum)
    lr = 0.001

Training runs on the CPU with deterministic algorithms and a fixed thread count. The
batch of step ``s`` is a pure function of ``(seed, s)``, so a segment can be replayed from
any checkpoint without replaying from step 0. At step 0, every ``checkpoint_interval``
steps and at the last step the state is committed: ``commitment(state)`` is the sha256
of the model and optimizer state in a canonical order. A task's result is one zip with
the final weights (safetensors), the loss curve, the commitments and the checkpoints.

While a task runs, ``<workdir>/train/checkpoints/step_NNNNNNNNN.pt`` and
``<workdir>/train/commitments.jsonl`` grow as checkpoints are taken, so an agent can
upload the latest one; a task re-run with ``resume_from`` and that checkpoint as input
``checkpoint`` continues from it instead of from step 0.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import shutil
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gpudepin.core.errors import InvalidInput, PayloadTooLarge
from gpudepin.workloads.base import Comparison, RunContext, TaskPlan

if TYPE_CHECKING:
    import torch

MODELS = ("mlp", "cnn", "transformer_lm")
OPTIMIZERS = ("adam", "sgd")
MAX_STEPS = 1_000_000
MAX_CHECKPOINTS = 1_000
MAX_THREADS = 64
MAX_DATASET_BYTES = 1024**3
MAX_CLASSES = 100_000
CHECKPOINT_DIR = "checkpoints"
RESULT_NAME = "training.zip"
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed so the same result packs to the same bytes


# ---------------------------------------------------------------- the spec


def parse_spec(text: str) -> dict[str, Any]:
    """The raw fields of a TOML spec; ``InvalidInput`` if it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(
            f"spec: not valid TOML ({exc})",
            hint="See `gpudepin submit train --help` for an example spec.",
            field="spec",
        ) from exc


def _int(raw: dict[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = raw.get(key, default)
    if value is None:
        raise InvalidInput(f"{key}: missing (a whole number from {low} to {high})", field=key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            f"{key}: {value!r} is not a whole number from {low} to {high}", field=key
        )
    return value


def _ints(raw: dict[str, Any], key: str, low: int, high: int, default: list[int]) -> list[int]:
    value = raw.get(key, default)
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= 8
        or any(isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high for v in value)
    ):
        raise InvalidInput(
            f"{key}: {value!r} is not a list of 1 to 8 whole numbers from {low} to {high}",
            field=key,
        )
    return list(value)


def _float(raw: dict[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{key}: {value!r} is not a number", field=key)
    if not low <= value <= high:
        raise InvalidInput(f"{key}: {value!r} is outside {low} to {high}", field=key)
    return float(value)


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if isinstance(value, str):  # `model = "mlp"` is shorthand for a table with defaults
        return {"name": value}
    if not isinstance(value, dict):
        raise InvalidInput(
            f"{key}: missing; add a [{key}] table with at least `name`",
            hint=f"[{key}] name = ...",
            field=key,
        )
    return value


def _model_config(raw: dict[str, Any]) -> dict[str, Any]:
    table = _table(raw, "model")
    name = table.get("name")
    if name not in MODELS:
        raise InvalidInput(
            f"model.name: unknown model {name!r}",
            hint=f"Known models: {', '.join(MODELS)}.",
            field="model.name",
        )
    prefixed = {f"model.{k}": v for k, v in table.items()}
    if name == "mlp":
        return {"name": name, "hidden": _ints(prefixed, "model.hidden", 1, 4096, [64])}
    if name == "cnn":
        return {"name": name, "channels": _ints(prefixed, "model.channels", 1, 256, [8, 16])}
    d_model = _int(prefixed, "model.d_model", 8, 1024, 64)
    heads = _int(prefixed, "model.heads", 1, 64, 4)
    if d_model % heads:
        raise InvalidInput(
            f"model.heads: {heads} does not divide model.d_model {d_model}", field="model.heads"
        )
    return {
        "name": name,
        "d_model": d_model,
        "layers": _int(prefixed, "model.layers", 1, 12, 2),
        "heads": heads,
        "context": _int(prefixed, "model.context", 2, 1024, 64),
    }


def _optimizer_config(raw: dict[str, Any]) -> dict[str, Any]:
    table = _table(raw, "optimizer")
    name = table.get("name")
    if name not in OPTIMIZERS:
        raise InvalidInput(
            f"optimizer.name: unknown optimizer {name!r}",
            hint=f"Known optimizers: {', '.join(OPTIMIZERS)}.",
            field="optimizer.name",
        )
    prefixed = {f"optimizer.{k}": v for k, v in table.items()}
    if "optimizer.lr" not in prefixed:
        raise InvalidInput("optimizer.lr: missing (a learning rate > 0)", field="optimizer.lr")
    lr = _float(prefixed, "optimizer.lr", 0.0, 10.0, 0.0)
    if lr <= 0:
        raise InvalidInput(f"optimizer.lr: {lr} is not > 0", field="optimizer.lr")
    config: dict[str, Any] = {
        "name": name,
        "lr": lr,
        "weight_decay": _float(prefixed, "optimizer.weight_decay", 0.0, 1.0, 0.0),
    }
    if name == "sgd":
        config["momentum"] = _float(prefixed, "optimizer.momentum", 0.0, 0.999, 0.0)
    return config


def normalize_spec(raw: dict[str, Any], dataset_path: Path) -> dict[str, Any]:
    """Check every field of a raw spec against itself and the dataset; return the JSON spec.

    Raises ``InvalidInput`` naming the field (``optimizer.lr``, ``batch_size``, ...).
    """
    model = _model_config(raw)
    optimizer = _optimizer_config(raw)
    steps = _int(raw, "steps", 1, MAX_STEPS)
    interval = _int(raw, "checkpoint_interval", 1, steps, min(steps, 100))
    if math.ceil(steps / interval) > MAX_CHECKPOINTS:
        raise InvalidInput(
            f"checkpoint_interval: {interval} gives more than {MAX_CHECKPOINTS} checkpoints",
            hint=f"Use at least {math.ceil(steps / MAX_CHECKPOINTS)}.",
            field="checkpoint_interval",
        )
    dataset = describe_dataset(model, dataset_path)
    spec = {
        "model": model,
        "optimizer": optimizer,
        "steps": steps,
        "batch_size": _int(raw, "batch_size", 1, 65_536),
        "seed": _int(raw, "seed", 0, 2**63 - 1, 0),
        "checkpoint_interval": interval,
        "threads": _int(raw, "threads", 1, MAX_THREADS, 1),
        "dataset": dataset,
    }
    if spec["batch_size"] > dataset["samples"]:
        raise InvalidInput(
            f"batch_size: {spec['batch_size']} is larger than the dataset's "
            f"{dataset['samples']} samples",
            field="batch_size",
        )
    known = {"model", "optimizer", "steps", "batch_size", "seed", "checkpoint_interval", "threads"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(
            f"{unknown[0]}: unknown field",
            hint=f"Known fields: {', '.join(sorted(known))}.",
            field=unknown[0],
        )
    return spec


# ---------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Dataset:
    """Training samples: arrays (``features``, ``labels``) or the bytes of a text."""

    kind: str  # "arrays" or "text"
    features: np.ndarray | None = None  # float32, (n, *feature_shape)
    labels: np.ndarray | None = None  # int64, (n,)
    tokens: np.ndarray | None = None  # uint8, the text's bytes
    context: int = 0

    @property
    def samples(self) -> int:
        if self.kind == "text":
            assert self.tokens is not None
            return max(0, len(self.tokens) - self.context)
        assert self.labels is not None
        return len(self.labels)


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise InvalidInput(
                    "dataset: an .npy holds one array; expected an .npz with features, labels",
                    field="dataset",
                )
            missing = [name for name in ("features", "labels") if name not in archive.files]
            if missing:
                raise InvalidInput(
                    f"dataset: the .npz lacks {', '.join(missing)} (it has {archive.files})",
                    hint="Save with numpy.savez(path, features=X, labels=y).",
                    field="dataset",
                )
            return archive["features"], archive["labels"]
    except InvalidInput:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidInput(
            f"dataset: cannot read it as .npz ({exc})",
            hint="Save with numpy.savez(path, features=X, labels=y); no pickled objects.",
            field="dataset",
        ) from exc


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, height, width) of one sample for the CNN."""
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    side = math.isqrt(shape[0]) if len(shape) == 1 else 0
    if len(shape) == 1 and side * side == shape[0]:
        return 1, side, side
    raise InvalidInput(
        f"dataset: features of shape (n, {', '.join(map(str, shape))}) are not images; the "
        "cnn takes (n, H, W), (n, C, H, W) or (n, k*k)",
        field="dataset",
    )


def describe_dataset(model: dict[str, Any], path: Path) -> dict[str, Any]:
    """Check a dataset file fits the model; return its JSON description for the spec."""
    if not path.is_file():
        raise InvalidInput("dataset: missing input file", field="dataset")
    size = path.stat().st_size
    if size > MAX_DATASET_BYTES:
        raise PayloadTooLarge(
            f"dataset: {size} bytes is over the limit of {MAX_DATASET_BYTES}", field="dataset"
        )
    if model["name"] == "transformer_lm":
        try:
            raw = path.read_bytes()
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"dataset: the language model's text is not UTF-8 (byte {exc.start})",
                field="dataset",
            ) from exc
        samples = len(raw) - model["context"]
        if samples < 1:
            raise InvalidInput(
                f"dataset: {len(raw)} bytes of text is not longer than model.context "
                f"{model['context']}",
                field="dataset",
            )
        return {"kind": "text", "bytes": len(raw), "samples": samples}
    features, labels = _read_arrays(path)
    if features.ndim < 2 or not (
        np.issubdtype(features.dtype, np.floating) or np.issubdtype(features.dtype, np.integer)
    ):
        raise InvalidInput(
            f"dataset: features must be numbers of shape (n, ...), not {features.dtype}"
            f"{features.shape}",
            field="dataset",
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidInput(
            f"dataset: labels must be whole numbers of shape (n,), not {labels.dtype}"
            f"{labels.shape}",
            field="dataset",
        )
    if len(features) != len(labels):
        raise InvalidInput(
            f"dataset: features has {len(features)} rows but labels has {len(labels)}",
            hint="Both arrays need one row per sample.",
            field="dataset",
        )
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= MAX_CLASSES:
        raise InvalidInput(
            f"dataset: labels must be class numbers from 0 to {MAX_CLASSES - 1}", field="dataset"
        )
    if not np.isfinite(features).all():
        raise InvalidInput("dataset: features hold NaN or infinite values", field="dataset")
    shape = tuple(int(d) for d in features.shape[1:])
    if model["name"] == "cnn":
        shape = _image_shape(shape)
        if shape[1] < 2 or shape[2] < 2:
            raise InvalidInput(
                f"dataset: images of {shape[1]}x{shape[2]} are too small", field="dataset"
            )
    return {
        "kind": "arrays",
        "samples": len(labels),
        "feature_shape": list(shape),
        "classes": int(labels.max()) + 1,
    }


def load_dataset(spec: dict[str, Any], path: Path) -> Dataset:
    """The dataset of a validated spec, shaped for its model."""
    info = spec["dataset"]
    if info["kind"] == "text":
        return Dataset(
            "text",
            tokens=np.frombuffer(path.read_bytes(), dtype=np.uint8),
            context=spec["model"]["context"],
        )
    features, labels = _read_arrays(path)
    shaped = features.astype(np.float32).reshape(len(features), *info["feature_shape"])
    return Dataset("arrays", features=shaped, labels=labels.astype(np.int64))


def batch_indices(seed: int, samples: int, batch_size: int, step: int) -> np.ndarray:
    """Sample indices of the batch at ``step``: a pure function of its arguments.

    The sample stream is a fresh permutation per epoch, each drawn from ``(seed, epoch)``;
    step ``s`` takes positions ``s*batch_size`` to ``(s+1)*batch_size - 1`` of the stream.
    """
    positions = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
    epochs = positions // samples
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        order = np.random.default_rng([seed, int(epoch)]).permutation(samples)
        mask = epochs == epoch
        out[mask] = order[positions[mask] % samples]
    return out


def _batch(dataset: Dataset, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    if dataset.kind == "text":
        assert dataset.tokens is not None
        windows = indices[:, None] + np.arange(dataset.context + 1)[None, :]
        chunk = torch.from_numpy(dataset.tokens[windows].astype(np.int64))
        return chunk[:, :-1], chunk[:, 1:]
    assert dataset.features is not None and dataset.labels is not None
    return torch.from_numpy(dataset.features[indices]), torch.from_numpy(dataset.labels[indices])


# ---------------------------------------------------------------- state and commitments


@dataclass
class TrainState:
    """Everything a step depends on besides the batch: weights and optimizer state."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    import torch

    cpu = tensor.detach().to("cpu").contiguous()
    if cpu.dtype == torch.bfloat16:
        cpu = cpu.view(torch.int16)  # numpy has no bfloat16; the bits are what count
    array = cpu.numpy()
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(order="C")


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key in value:
            yield from _flatten(f"{prefix}/{key}", value[key])
    elif isinstance(value, list | tuple) and any(isinstance(v, dict) for v in value):
        for index, item in enumerate(value):
            yield from _flatten(f"{prefix}/{index}", item)
    else:
        yield prefix, value


def commitment(state: TrainState) -> str:
    """sha256 of the step, the model and the optimizer state in a canonical order.

    Keys are visited sorted; each tensor contributes its dtype, shape and little-endian
    C-order bytes; every other value its JSON form (floats as their exact repr).
    """
    import torch

    items = [("step", state.step)]
    items += _flatten("model", state.model)
    items += _flatten("optimizer", state.optimizer)
    digest = hashlib.sha256()
    for key, value in sorted(items, key=lambda item: item[0]):
        digest.update(len(key).to_bytes(4, "little") + key.encode())
        if isinstance(value, torch.Tensor):
            header = f"T{str(value.dtype).removeprefix('torch.')}{list(value.shape)}".encode()
            body = _tensor_bytes(value)
        else:
            header = b"J"
            body = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        digest.update(len(header).to_bytes(4, "little") + header)
        digest.update(len(body).to_bytes(8, "little") + body)
    return digest.hexdigest()


def save_checkpoint(state: TrainState, path: Path) -> None:
    """Write a state with torch's format (read back with ``weights_only``, never pickle)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": state.step, "model": state.model, "optimizer": state.optimizer}, path)


def load_checkpoint(path: Path) -> TrainState:
    """Read a checkpoint; ``InvalidInput`` if it is not one (it may come from a stranger)."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        return TrainState(int(data["step"]), dict(data["model"]), dict(data["optimizer"]))
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        raise InvalidInput(
            f"checkpoint: cannot read {path.name} ({type(exc).__name__}: {str(exc)[:200]})",
            field="checkpoint",
        ) from exc


# ---------------------------------------------------------------- training


@contextlib.contextmanager
def _deterministic(threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed intra-op thread count, restored afterwards."""
    import torch

    previous = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])


def _build(spec: dict[str, Any]) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    import torch

    from gpudepin.workloads import train_models

    # fork_rng keeps the caller's global generator untouched by the seeded initialisation.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        module = train_models.build(spec["model"], spec["dataset"])
    opt = spec["optimizer"]
    optimizer: torch.optim.Optimizer
    # foreach=False: the single-tensor kernels are the same on every machine and device.
    if opt["name"] == "adam":
        optimizer = torch.optim.Adam(
            module.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"], foreach=False
        )
    else:
        optimizer = torch.optim.SGD(
            module.parameters(),
            lr=opt["lr"],
            momentum=opt["momentum"],
            weight_decay=opt["weight_decay"],
            foreach=False,
        )
    return module, optimizer


def _snapshot(step: int, module: Any, optimizer: Any) -> TrainState:
    model = {name: t.detach().clone() for name, t in module.state_dict().items()}
    return TrainState(step, model, copy.deepcopy(optimizer.state_dict()))


def initial_state(spec: dict[str, Any]) -> TrainState:
    """The state at step 0: weights drawn from the seed, an empty optimizer state."""
    with _deterministic(spec["threads"]):
        module, optimizer = _build(spec)
        return _snapshot(0, module, optimizer)


def _is_checkpoint(spec: dict[str, Any], step: int) -> bool:
    return bool(step % spec["checkpoint_interval"] == 0 or step == spec["steps"])


def checkpoint_steps(spec: dict[str, Any]) -> list[int]:
    """The steps at which a run commits its state: 0, every interval, and the last."""
    return [s for s in range(spec["steps"] + 1) if _is_checkpoint(spec, s)]


def train_segment(
    spec: dict[str, Any],
    dataset: Dataset | Path,
    start_state: TrainState | None,
    start_step: int,
    end_step: int,
    on_checkpoint: Callable[[TrainState], None] | None = None,
) -> tuple[TrainState, list[float]]:
    """Train from ``start_step`` (the state then, or None for step 0) to ``end_step``.

    Returns the state at ``end_step`` and the loss of each step taken. ``on_checkpoint``
    sees the state at every checkpoint step after ``start_step`` up to ``end_step``.
    """
    from gpudepin.workloads import train_models

    if isinstance(dataset, Path):
        dataset = load_dataset(spec, dataset)
    if not 0 <= start_step <= end_step <= spec["steps"]:
        raise InvalidInput(
            f"steps: segment {start_step}-{end_step} is outside 0-{spec['steps']}", field="steps"
        )
    if start_state is None:
        if start_step != 0:
            raise InvalidInput(
                "checkpoint: a segment after step 0 needs its starting state", field="checkpoint"
            )
        start_state = initial_state(spec)
    if start_state.step != start_step:
        raise InvalidInput(
            f"checkpoint: the state is at step {start_state.step}, not {start_step}",
            field="checkpoint",
        )
    losses: list[float] = []
    with _deterministic(spec["threads"]):
        module, optimizer = _build(spec)
        module.load_state_dict(start_state.model)
        if start_state.optimizer.get("state"):
            # a copy: torch reuses the tensors it is given and steps would alter the caller's
            optimizer.load_state_dict(copy.deepcopy(start_state.optimizer))
        module.train()
        for step in range(start_step, end_step):
            x, y = _batch(
                dataset, batch_indices(spec["seed"], dataset.samples, spec["batch_size"], step)
            )
            optimizer.zero_grad(set_to_none=True)
            loss = train_models.loss(module, spec["model"]["name"], x, y)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            losses.append(float(loss.detach()))
            if on_checkpoint is not None and _is_checkpoint(spec, step + 1):
                on_checkpoint(_snapshot(step + 1, module, optimizer))
        final = _snapshot(end_step, module, optimizer)
    return final, losses


def replay_to(
    spec: dict[str, Any],
    dataset: Dataset | Path,
    checkpoint_path: Path,
    start_step: int,
    end_step: int,
) -> TrainState:
    """The state at ``end_step`` reached from the checkpoint at ``start_step``."""
    start = load_checkpoint(checkpoint_path)
    state, _ = train_segment(spec, dataset, start, start_step, end_step)
    return state


def replay_segment(
    spec: dict[str, Any],
    dataset: Dataset | Path,
    checkpoint_path: Path,
    start_step: int,
    end_step: int,
) -> str:
    """Replay a segment from a checkpoint; return the commitment of the state it reaches.

    An auditor compares it with the commitment the provider published for ``end_step``;
    with the same torch build and ``threads`` an honest segment matches bit for bit.
    """
    return commitment(replay_to(spec, dataset, checkpoint_path, start_step, end_step))


def state_at(
    spec: dict[str, Any],
    dataset: Dataset | Path,
    checkpoint_path: Path | None,
    anchor_step: int,
    step: int,
) -> TrainState:
    """The state at ``step`` replayed from the checkpoint at ``anchor_step`` (None: step 0)."""
    start = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    state, _ = train_segment(spec, dataset, start, anchor_step, step)
    return state


def hash_at(
    spec: dict[str, Any],
    dataset: Dataset | Path,
    checkpoint_path: Path | None,
    anchor_step: int,
    step: int,
) -> str:
    """The commitment of the state at ``step``: a party's answer to a bisection query."""
    return commitment(state_at(spec, dataset, checkpoint_path, anchor_step, step))


def pick_segment(spec: dict[str, Any], rng: Any) -> tuple[int, int]:
    """A random pair of consecutive checkpoint steps: what a segment audit replays."""
    steps = checkpoint_steps(spec)
    i = rng.randrange(len(steps) - 1)
    return steps[i], steps[i + 1]


def segment_task(start: int, end: int) -> dict[str, Any]:
    """The task spec of a replay of ``start -> end`` (from input ``checkpoint`` past 0)."""
    task: dict[str, Any] = {"start_step": start, "end_step": end, "segment": [start, end]}
    if start > 0:
        task["resume_from"] = start
    return task


def commitments_of(result: Path) -> dict[int, str]:
    """Step -> commitment of a result archive."""
    return {int(c["step"]): str(c["sha256"]) for c in read_result(result)["commitments"]}


# ---------------------------------------------------------------- results


def checkpoint_name(step: int) -> str:
    return f"step_{step:09d}.pt"


def read_result(path: Path) -> dict[str, Any]:
    """The manifest, commitments and losses of a result archive (not the checkpoints)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {
                "manifest": json.loads(archive.read("manifest.json")),
                "commitments": json.loads(archive.read("commitments.json")),
                "losses": json.loads(archive.read("losses.json")),
            }
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError, OSError) as exc:
        raise InvalidInput(
            f"result: not a training result archive ({exc})", field="result"
        ) from exc


def extract_checkpoint(result: Path, step: int, dest_dir: Path) -> Path:
    """Copy the checkpoint of ``step`` out of a result archive (for replays and resumes)."""
    name = f"{CHECKPOINT_DIR}/{checkpoint_name(step)}"
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / checkpoint_name(step)
    try:
        with zipfile.ZipFile(result) as archive, archive.open(name) as src:
            target.write_bytes(src.read())
    except KeyError:
        raise InvalidInput(f"result: no checkpoint at step {step}", field="result") from None
    return target


def _pack(dest: Path, files: dict[str, bytes | Path]) -> None:
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            # Float tensors barely compress and deflating them cost ~0.15 s per checkpoint.
            info.compress_type = (
                zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            )
            content = files[name]
            data = content.read_bytes() if isinstance(content, Path) else content
            archive.writestr(info, data)


def _weights_bytes(model: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({name: t.contiguous() for name, t in model.items()})


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode()


def _segment_within(spec: dict[str, Any], left: set[int], right: set[int]) -> list[int] | None:
    """The steps of a segment replay when one side is one and the other a complete run:
    consecutive checkpoint steps (at least two) all inside the complete run's."""
    complete = set(checkpoint_steps(spec))
    for part, whole in ((left, right), (right, left)):
        if whole == complete and part < whole and len(part) >= 2:
            ordered = sorted(complete)
            steps = sorted(part)
            first = ordered.index(steps[0])
            if ordered[first : first + len(steps)] == steps:
                return steps
    return None


class TrainingWorkload:
    """Reproducible training, one task per job; see the module docstring."""

    name = "train"
    input_names = ("spec", "dataset", "checkpoint")
    required_inputs = ("dataset",)  # the spec may come as params; checkpoint only on resume

    def validate(self, params: dict[str, Any], inputs: dict[str, Path]) -> dict[str, Any]:
        raw = dict(params)
        if "spec" in inputs:
            try:
                text = inputs["spec"].read_text("utf-8")
            except (UnicodeDecodeError, OSError) as exc:
                raise InvalidInput(f"spec: cannot read it as UTF-8 ({exc})", field="spec") from exc
            raw = {**parse_spec(text), **raw}
        if "dataset" not in inputs:
            raise InvalidInput("dataset: missing input file", field="dataset")
        return normalize_spec(raw, inputs["dataset"])

    def split(self, spec: dict[str, Any]) -> list[TaskPlan]:
        # Each step needs the state the previous one left: the segments are sequential, so
        # parallel tasks would only add hand-over cost. Resumes and audits cut segments.
        return [TaskPlan(f"steps 0-{spec['steps']}", {"start_step": 0, "end_step": spec["steps"]})]

    def run(
        self, spec: dict[str, Any], task: dict[str, Any], inputs: dict[str, Path], ctx: RunContext
    ) -> Path:
        """Train on the CPU (``spec.threads`` threads, whatever ``ctx`` says) and pack the result.

        ``task["resume_from"]`` (a step) with input ``checkpoint`` continues a task that
        died; ``task["prior_commitments"]`` (the list published before) is checked against
        the checkpoint and carried into the result.
        """
        import torch

        dataset = load_dataset(spec, inputs["dataset"])
        work = ctx.workdir / "train"
        checkpoints = work / CHECKPOINT_DIR
        checkpoints.mkdir(parents=True, exist_ok=True)
        journal = work / "commitments.jsonl"
        journal.write_text("")
        end_step = int(task.get("end_step", spec["steps"]))
        prior = [c for c in task.get("prior_commitments", []) if isinstance(c, dict)]
        commitments: list[dict[str, Any]] = []

        def keep(state: TrainState) -> None:
            save_checkpoint(state, checkpoints / checkpoint_name(state.step))
            entry = {"step": state.step, "sha256": commitment(state)}
            commitments.append(entry)
            with journal.open("a") as handle:
                handle.write(json.dumps(entry) + "\n")

        resume = task.get("resume_from")
        if resume is None:
            start_step, start = 0, initial_state(spec)
            prior = []
        else:
            start_step = int(resume)
            if "checkpoint" not in inputs:
                raise InvalidInput(
                    "checkpoint: resume_from needs the checkpoint input", field="checkpoint"
                )
            start = load_checkpoint(inputs["checkpoint"])
            expected = {int(c["step"]): c["sha256"] for c in prior}
            if start_step in expected and expected[start_step] != commitment(start):
                raise InvalidInput(
                    f"checkpoint: its state does not match the commitment of step {start_step}",
                    field="checkpoint",
                )
            prior = [c for c in prior if int(c["step"]) < start_step]
        keep(start)
        state, losses = train_segment(spec, dataset, start, start_step, end_step, keep)
        if not _is_checkpoint(spec, end_step):
            keep(state)
        all_commitments = prior + commitments
        files: dict[str, bytes | Path] = {
            "weights.safetensors": _weights_bytes(state.model),
            "losses.json": _json({"start_step": start_step, "losses": losses}),
            "commitments.json": _json(all_commitments),
            "manifest.json": _json(
                {
                    "spec": spec,
                    "torch": torch.__version__,
                    "threads": spec["threads"],
                    "start_step": start_step,
                    "end_step": end_step,
                }
            ),
        }
        for entry in commitments:
            name = checkpoint_name(entry["step"])
            files[f"{CHECKPOINT_DIR}/{name}"] = checkpoints / name
        dest = ctx.workdir / RESULT_NAME
        _pack(dest, files)
        return dest

    def check_result(self, spec: dict[str, Any], task: dict[str, Any], path: Path) -> str | None:
        """A task's result must commit every checkpoint step up to its end: an audit
        replays one segment between two of them, so none may be left out."""
        try:
            have = set(commitments_of(path))
        except InvalidInput as exc:
            return exc.message
        end = int(task.get("end_step", spec["steps"]))
        missing = sorted({s for s in checkpoint_steps(spec) if s <= end} - have)
        if missing:
            return f"result: no commitment for checkpoint steps {missing[:5]}"
        return None

    def compare(self, spec: dict[str, Any], a: Path, b: Path) -> Comparison:
        """Equal when both results publish the same commitments; ``detail`` names the first
        step where they part, the bracket a bisection starts from."""
        ours, theirs = commitments_of(a), commitments_of(b)
        steps = sorted(set(ours) | set(theirs))
        segment = _segment_within(spec, set(ours), set(theirs))
        if segment is not None:  # a segment replay is judged on the steps it replayed
            steps = segment
        for agreed, step in enumerate(steps):
            if ours.get(step) != theirs.get(step):
                last = steps[agreed - 1] if agreed else None
                return Comparison(
                    False,
                    agreed / len(steps),
                    f"commitments differ first at step {step} (last agreeing step: {last})",
                )
        return Comparison(True, 1.0, f"{len(steps)} commitments identical")

    def merge(
        self, spec: dict[str, Any], results: list[tuple[TaskPlan, Path]], dest: Path
    ) -> list[Path]:
        if len(results) != 1:
            raise InvalidInput(
                f"merge: expected one training result, got {len(results)}", field="results"
            )
        dest.mkdir(parents=True, exist_ok=True)
        archive = dest / RESULT_NAME
        shutil.copyfile(results[0][1], archive)
        out = [archive]
        with zipfile.ZipFile(archive) as packed:
            for name in ("weights.safetensors", "losses.json", "commitments.json"):
                target = dest / name
                target.write_bytes(packed.read(name))
                out.append(target)
        return out


# ---------------------------------------------------------------- demo data


def make_digits_npz(path: Path) -> Path:
    """Write scikit-learn's bundled 8x8 digits (1,797 samples, no download) as a dataset."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        features=(digits.images / 16.0).astype(np.float32).reshape(len(digits.target), 64),
        labels=digits.target.astype(np.int64),
    )
    path.write_bytes(buffer.getvalue())
    return path


def write_tiny_text(path: Path) -> Path:
    """Write the short text shipped with the package, a dataset for ``transformer_lm``."""
    from gpudepin.workloads.demo_text import TINY_TEXT

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TINY_TEXT, "utf-8")
    return path


DEMO_SPECS = {
    "mlp": '[model]\nname = "mlp"\nhidden = [64, 32]\n',
    "cnn": '[model]\nname = "cnn"\nchannels = [8, 16]\n',
    "transformer_lm": (
        '[model]\nname = "transformer_lm"\nd_model = 32\nlayers = 2\nheads = 4\ncontext = 32\n'
    ),
}


def demo_spec(model: str = "mlp", steps: int = 300, checkpoint_interval: int = 50) -> str:
    """A ready TOML spec for the demo datasets (digits, or the tiny text for the LM)."""
    if model not in DEMO_SPECS:
        raise InvalidInput(f"model.name: unknown model {model!r}", field="model.name")
    return (
        f"steps = {steps}\nbatch_size = 32\nseed = 7\n"
        f"checkpoint_interval = {checkpoint_interval}\nthreads = 1\n\n"
        f'{DEMO_SPECS[model]}\n[optimizer]\nname = "adam"\nlr = 0.003\n'
    )


WORKLOAD = TrainingWorkload()
