"""Hosted endpoints: the embeddings and ONNX servers, and the OpenAI wire format."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from gpudepin.core.errors import InvalidInput
from gpudepin.workloads.inference import embed
from gpudepin.workloads.serving import (
    load_server,
    openai_embeddings,
    openai_embeddings_response,
)

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def embeddings_server():
    return load_server("embeddings")


def test_embeddings_server_answers_one_or_many_texts(embeddings_server) -> None:
    one = embeddings_server.invoke({"input": "a provider behind NAT"})
    many = embeddings_server.invoke({"input": ["first", "second"]})
    assert len(one["embeddings"]) == 1 and len(one["embeddings"][0]) == 384
    assert len(many["embeddings"]) == 2
    expected = embed("all-minilm-l6-v2", ["first", "second"])
    assert np.allclose(np.array(many["embeddings"], np.float32), expected, atol=1e-6)
    assert many["prompt_tokens"] == 2


@pytest.mark.parametrize("payload", [{}, {"input": []}, {"input": [1, 2]}, {"input": 5}])
def test_embeddings_server_refuses_bad_payloads(embeddings_server, payload: dict) -> None:
    with pytest.raises(InvalidInput, match="input: expected a string"):
        embeddings_server.invoke(payload)


def _openai_client(server):
    """An openai client whose HTTP calls go straight to our handler, as through a gateway."""
    openai = pytest.importorskip("openai")
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/embeddings")
        body = json.loads(request.content)
        seen.append(body)
        return httpx.Response(200, json=openai_embeddings(server, body))

    client = openai.OpenAI(
        base_url="http://gateway.test/v1/leases/7/openai/v1",
        api_key="unused",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    return client, seen


@pytest.mark.parametrize("encoding", [None, "float"])
def test_openai_client_parses_our_embeddings(embeddings_server, encoding: str | None) -> None:
    client, seen = _openai_client(embeddings_server)
    texts = ["GPUs by the second", "verified work only"]
    kwargs = {"encoding_format": encoding} if encoding else {}
    with client:
        response = client.embeddings.create(model="all-minilm-l6-v2", input=texts, **kwargs)
    assert seen[0]["encoding_format"] == (encoding or "base64")  # the client's default
    assert [d.index for d in response.data] == [0, 1]
    got = np.array([d.embedding for d in response.data], np.float32)
    assert np.array_equal(got, embed("all-minilm-l6-v2", texts))
    assert response.model == "all-minilm-l6-v2"
    assert response.usage.prompt_tokens == response.usage.total_tokens > 0


def test_openai_response_has_the_documented_shape() -> None:
    body = openai_embeddings_response(np.eye(2, dtype=np.float32), "m", ["a b", "c"])
    assert body == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
        ],
        "model": "m",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


def _model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_server_runs_the_model_on_nested_lists(tmp_path: Path) -> None:
    server = load_server("onnx", _model(tmp_path / "m.onnx"))
    answer = server.invoke({"inputs": {"x": [[1, 0, 0], [0, 1, 1]]}})
    assert answer == {"outputs": {"y": [[0.0, 1.0], [6.0, 8.0]]}}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"inputs": {"z": [[1, 2, 3]]}}, "missing \\['x'\\]"),
        ({"inputs": {"x": [[1, 2]]}}, "axis 1 should be 3"),
        ({"inputs": {"x": [[1, 2, 3], [1]]}}, "not a rectangular array"),
        ({"x": [[1, 2, 3]]}, "expected"),
    ],
)
def test_onnx_server_refuses_inputs_that_do_not_fit(
    tmp_path: Path, payload: dict, message: str
) -> None:
    server = load_server("onnx", _model(tmp_path / "m.onnx"))
    with pytest.raises(InvalidInput, match=message):
        server.invoke(payload)


def test_unknown_endpoint_kind_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown endpoint kind"):
        load_server("llm")
