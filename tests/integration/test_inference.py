"""Batch inference through split, run and merge, against direct engine runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpudepin.core.errors import InvalidInput
from gpudepin.workloads.base import RunContext
from gpudepin.workloads.inference import WORKLOAD, embed, load_catalog_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def make_matmul_relu(path: Path, features: int = 4, out: int = 3, batch: int | str = "N") -> Path:
    """A model computing relu(x @ W + b) with a batch axis fixed or dynamic."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array(rng.normal(size=(features, out)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.normal(size=(out,)).astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["pre"]),
            helper.make_node("Relu", ["pre"], ["y"]),
        ],
        "matmul_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, out])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_two_inputs(path: Path) -> Path:
    """A model with two inputs (float and int64) and two outputs."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["a", "a"], ["square"]),
            helper.make_node("Neg", ["ids"], ["negated"]),
        ],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2, 2]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"]),
        ],
        [
            helper.make_tensor_value_info("square", TensorProto.FLOAT, ["N", 2, 2]),
            helper.make_tensor_value_info("negated", TensorProto.INT64, ["N"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def run_job(params: dict, inputs: dict[str, Path], workdir: Path) -> tuple[dict, list[Path]]:
    """Validate, split, run every task in its own folder and merge, as the network does."""
    spec = WORKLOAD.validate(params, inputs)
    results = []
    for index, plan in enumerate(WORKLOAD.split(spec)):
        ctx = RunContext(workdir=workdir / f"task{index}", threads=1)
        results.append((plan, WORKLOAD.run(spec, plan.spec, inputs, ctx)))
    return spec, WORKLOAD.merge(spec, results, workdir / "out")


def direct(model: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


def test_split_run_merge_equals_direct_onnx_run_exactly(tmp_path: Path) -> None:
    model = make_matmul_relu(tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    spec, outputs = run_job(
        {"model": "onnx", "batch_size": 3},
        {"model": model, "inputs": tmp_path / "in.npz"},
        tmp_path,
    )
    assert spec["rows"] == 10
    assert len(WORKLOAD.split(spec)) == 4
    with np.load(outputs[0]) as merged:
        assert np.array_equal(merged["y"], direct(model, {"x": x})["y"])


def test_single_input_model_accepts_npy(tmp_path: Path) -> None:
    model = make_matmul_relu(tmp_path / "m.onnx")
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    _, outputs = run_job(
        {"model": "onnx", "batch_size": 2}, {"model": model, "inputs": tmp_path / "x.npy"}, tmp_path
    )
    with np.load(outputs[0]) as merged:
        assert np.array_equal(merged["y"], direct(model, {"x": x})["y"])


def test_two_inputs_and_integer_outputs_merge_in_order(tmp_path: Path) -> None:
    model = make_two_inputs(tmp_path / "two.onnx")
    a = np.arange(7 * 4, dtype=np.float32).reshape(7, 2, 2)
    ids = np.arange(7, dtype=np.int64)
    np.savez(tmp_path / "in.npz", a=a, ids=ids)
    _, outputs = run_job(
        {"model": "onnx", "batch_size": 2},
        {"model": model, "inputs": tmp_path / "in.npz"},
        tmp_path,
    )
    with np.load(outputs[0]) as merged:
        assert np.array_equal(merged["square"], a * a)
        assert np.array_equal(merged["negated"], -ids)


def test_model_with_fixed_batch_runs_in_chunks(tmp_path: Path) -> None:
    model = make_matmul_relu(tmp_path / "m.onnx", batch=2)
    x = np.random.default_rng(3).normal(size=(8, 4)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    _, outputs = run_job(
        {"model": "onnx", "batch_size": 4},
        {"model": model, "inputs": tmp_path / "in.npz"},
        tmp_path,
    )
    expected = np.concatenate([direct(model, {"x": x[i : i + 2]})["y"] for i in range(0, 8, 2)])
    with np.load(outputs[0]) as merged:
        assert np.array_equal(merged["y"], expected)
    with pytest.raises(InvalidInput, match="batch_size"):
        WORKLOAD.validate(
            {"model": "onnx", "batch_size": 3}, {"model": model, "inputs": tmp_path / "in.npz"}
        )


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"wrong": np.zeros((2, 4), np.float32)}, "missing \\['x'\\]"),
        ({"x": np.zeros((2, 5), np.float32)}, "axis 1 should be 4"),
        ({"x": np.zeros((2, 4, 1), np.float32)}, "expects \\(\\?, 4\\)"),
        ({"x": np.zeros((2, 4), np.float64)}, "dtype float64, the model expects float32"),
    ],
)
def test_inputs_that_do_not_fit_the_model_are_refused(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    model = make_matmul_relu(tmp_path / "m.onnx")
    np.savez(tmp_path / "in.npz", **arrays)
    with pytest.raises(InvalidInput, match=message) as caught:
        WORKLOAD.validate({"model": "onnx"}, {"model": model, "inputs": tmp_path / "in.npz"})
    assert caught.value.details["field"] == "inputs"


def test_arrays_of_different_lengths_are_refused(tmp_path: Path) -> None:
    model = make_two_inputs(tmp_path / "two.onnx")
    np.savez(tmp_path / "in.npz", a=np.zeros((3, 2, 2), np.float32), ids=np.zeros(4, np.int64))
    with pytest.raises(InvalidInput, match="same length"):
        WORKLOAD.validate({"model": "onnx"}, {"model": model, "inputs": tmp_path / "in.npz"})


def test_npy_for_a_model_with_two_inputs_is_refused(tmp_path: Path) -> None:
    model = make_two_inputs(tmp_path / "two.onnx")
    np.save(tmp_path / "a.npy", np.zeros((3, 2, 2), np.float32))
    with pytest.raises(InvalidInput, match="several inputs"):
        WORKLOAD.validate({"model": "onnx"}, {"model": model, "inputs": tmp_path / "a.npy"})


def test_corrupt_onnx_is_refused_naming_the_model(tmp_path: Path) -> None:
    good = make_matmul_relu(tmp_path / "m.onnx").read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(good[: len(good) // 2])
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 4), np.float32))
    with pytest.raises(InvalidInput, match="model: not a valid ONNX model") as caught:
        WORKLOAD.validate({"model": "onnx"}, {"model": bad, "inputs": tmp_path / "in.npz"})
    assert caught.value.details["field"] == "model"


def test_missing_input_file_and_unknown_catalog_model_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="inputs: missing input file"):
        WORKLOAD.validate({"model": "onnx"}, {"model": make_matmul_relu(tmp_path / "m.onnx")})
    (tmp_path / "t.txt").write_text("hi\n")
    with pytest.raises(InvalidInput, match="unknown catalog model 'gpt-9'"):
        WORKLOAD.validate({"model": "gpt-9"}, {"texts": tmp_path / "t.txt"})


def test_compare_reports_exact_match_and_catches_a_changed_value(tmp_path: Path) -> None:
    model = make_matmul_relu(tmp_path / "m.onnx")
    x = np.random.default_rng(4).normal(size=(6, 4)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    inputs = {"model": model, "inputs": tmp_path / "in.npz"}
    spec = WORKLOAD.validate({"model": "onnx", "batch_size": 6}, inputs)
    task = WORKLOAD.split(spec)[0].spec
    first = WORKLOAD.run(spec, task, inputs, RunContext(workdir=tmp_path / "a"))
    second = WORKLOAD.run(spec, task, inputs, RunContext(workdir=tmp_path / "b"))
    same = WORKLOAD.compare(spec, first, second)
    assert same.equal and same.score == 1.0 and "exact" in same.detail

    with np.load(second) as data:
        forged = {"y": data["y"] + np.float32(0.5)}
    np.savez(tmp_path / "forged.npz", **forged)
    verdict = WORKLOAD.compare(spec, first, tmp_path / "forged.npz")
    assert not verdict.equal
    assert "0.5" in verdict.detail


def test_merge_refuses_a_missing_row_range(tmp_path: Path) -> None:
    model = make_matmul_relu(tmp_path / "m.onnx")
    np.savez(tmp_path / "in.npz", x=np.ones((4, 4), np.float32))
    inputs = {"model": model, "inputs": tmp_path / "in.npz"}
    spec = WORKLOAD.validate({"model": "onnx", "batch_size": 2}, inputs)
    last = WORKLOAD.split(spec)[1]
    result = WORKLOAD.run(spec, last.spec, inputs, RunContext(workdir=tmp_path / "t"))
    with pytest.raises(InvalidInput, match="rows 0-1 have no result"):
        WORKLOAD.merge(spec, [(last, result)], tmp_path / "out")


# ---------------------------------------------------------------- catalog embeddings


@pytest.fixture(scope="module")
def minilm() -> object:
    """Load the embedding model once for this module (it takes seconds)."""
    return load_catalog_model("all-minilm-l6-v2", "cpu")


TEXTS = [
    "GPUs rent by the second.",
    "A provider behind a home router polls for work.",
    "Ünïcödé is fine too: 東京",
    "",
    "Short.",
]


def test_embeddings_through_the_network_match_the_model(tmp_path: Path, minilm: object) -> None:
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(f'{{"text": {t!r}}}\n'.replace("'", '"') for t in TEXTS), "utf-8")
    spec, outputs = run_job(
        {"model": "all-minilm-l6-v2", "batch_size": 2}, {"texts": path}, tmp_path
    )
    merged = np.load(outputs[0])
    assert merged.shape == (5, 384) and merged.dtype == np.float32
    expected = minilm.encode(TEXTS, convert_to_numpy=True)  # type: ignore[attr-defined]
    assert np.allclose(merged, expected, atol=1e-5)
    assert WORKLOAD.compare(
        spec, tmp_path / "task0" / "emb_000000000.npy", tmp_path / "task0" / "emb_000000000.npy"
    ).equal


def test_plain_text_gives_one_embedding_per_line(tmp_path: Path, minilm: object) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("first line\nsecond line\n", "utf-8")
    spec = WORKLOAD.validate({"model": "all-minilm-l6-v2"}, {"texts": path})
    assert spec["rows"] == 2
    result = WORKLOAD.run(
        spec, WORKLOAD.split(spec)[0].spec, {"texts": path}, RunContext(workdir=tmp_path / "w")
    )
    assert np.allclose(
        np.load(result), embed("all-minilm-l6-v2", ["first line", "second line"]), atol=1e-5
    )


def test_random_embeddings_fail_comparison(tmp_path: Path, minilm: object) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS), "utf-8")
    spec = WORKLOAD.validate({"model": "all-minilm-l6-v2"}, {"texts": path})
    honest = WORKLOAD.run(
        spec, WORKLOAD.split(spec)[0].spec, {"texts": path}, RunContext(workdir=tmp_path / "w")
    )
    fake = np.random.default_rng(0).normal(size=(5, 384)).astype(np.float32)
    np.save(tmp_path / "fake.npy", fake / np.linalg.norm(fake, axis=1, keepdims=True))
    verdict = WORKLOAD.compare(spec, honest, tmp_path / "fake.npy")
    assert not verdict.equal and verdict.score < 0.5


def test_texts_that_are_not_utf8_are_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "texts.txt"
    path.write_bytes(b"fine\nnot \xff utf8\n")
    with pytest.raises(InvalidInput, match=r"texts: not UTF-8.*line 2"):
        WORKLOAD.validate({"model": "all-minilm-l6-v2"}, {"texts": path})
