"""What a provider runs for a hosted inference endpoint on a lease.

``load_server(kind, model_path)`` loads the model once; ``Server.invoke(payload)`` answers
one request as JSON-able dicts, so the agent can relay requests that reach it through
the coordinator's gateway (providers sit behind NAT; nothing connects into them).

* ``"embeddings"``: a catalog text model. ``{"input": str | [str, ...]}`` →
  ``{"embeddings": [[...], ...], "model": name, "prompt_tokens": n}``.
* ``"onnx"``: the buyer's ONNX file. ``{"inputs": {name: nested lists}}`` (first axis the
  batch) → ``{"outputs": {name: nested lists}}``.

``openai_embeddings(server, body)`` answers an OpenAI ``POST /v1/embeddings`` body with
the exact response shape the ``openai`` client parses (floats or base64).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gpudepin.core.errors import InvalidInput, PayloadTooLarge
from gpudepin.workloads.inference import (
    MAX_TEXT_CHARS,
    TensorSig,
    catalog_model,
    check_arrays,
    embed,
    load_catalog_model,
    onnx_session,
    onnx_signature,
    run_onnx,
)

DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
MAX_TEXTS_PER_REQUEST = 2048  # the same cap OpenAI puts on one embeddings request
MAX_ROWS_PER_REQUEST = 4096
SERVE_PREFIX = "serve:"  # a lease whose workload starts so serves a model


class Server(Protocol):
    """A loaded model answering one request at a time."""

    kind: str
    model_name: str

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer one request; ``InvalidInput`` if the payload does not fit the model."""
        ...


def _texts(payload: dict[str, Any], key: str = "input") -> list[str]:
    value = payload.get(key)
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidInput(
            f"{key}: expected a string or a non-empty list of strings",
            hint='Send {"input": "some text"} or {"input": ["one", "two"]}.',
            field=key,
        )
    if len(texts) > MAX_TEXTS_PER_REQUEST:
        raise PayloadTooLarge(
            f"{key}: {len(texts)} texts in one request, over {MAX_TEXTS_PER_REQUEST}",
            field=key,
        )
    for index, text in enumerate(texts):
        if len(text) > MAX_TEXT_CHARS:
            raise PayloadTooLarge(
                f"{key}[{index}]: {len(text)} characters, over {MAX_TEXT_CHARS}", field=key
            )
    return texts


class EmbeddingsServer:
    """A catalog embedding model held in memory for the lease."""

    kind = "embeddings"

    def __init__(self, model_name: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu") -> None:
        self.model_name = catalog_model(model_name).name
        self.device = device
        self._model = load_catalog_model(self.model_name, device)

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads (after its truncation), as OpenAI's ``usage`` reports."""
        limit = catalog_model(self.model_name).max_tokens
        encoded = self._model.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return sum(min(len(ids), limit) for ids in encoded)

    def embed(self, texts: list[str]) -> np.ndarray:
        return embed(self.model_name, texts, self.device)

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        texts = _texts(payload)
        vectors = self.embed(texts)
        return {
            "embeddings": vectors.tolist(),
            "model": self.model_name,
            "prompt_tokens": self.count_tokens(texts),
        }


class OnnxServer:
    """A buyer's ONNX model held in an ONNX Runtime session for the lease."""

    kind = "onnx"

    def __init__(self, model_path: Path, device: str = "cpu", threads: int = 1) -> None:
        self.model_name = model_path.name
        self.inputs, self.outputs = onnx_signature(model_path)
        self._session = onnx_session(model_path, device, threads)
        fixed = {d for d in (sig.shape[0] for sig in self.inputs) if d is not None}
        self._chunk = next(iter(fixed), None)

    def signature(self) -> dict[str, Any]:
        """Input and output names, dtypes and shapes, for the lease's description."""
        return {
            "inputs": [sig.to_json() for sig in self.inputs],
            "outputs": [sig.to_json() for sig in self.outputs],
        }

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        raw = payload.get("inputs")
        if not isinstance(raw, dict):
            raise InvalidInput(
                'inputs: expected {"inputs": {name: nested list}}',
                hint=f"This model takes {', '.join(s.name for s in self.inputs)}.",
                field="inputs",
            )
        arrays = {name: self._array(name, value) for name, value in raw.items()}
        rows = check_arrays(self.inputs, arrays)
        if rows > MAX_ROWS_PER_REQUEST:
            raise PayloadTooLarge(
                f"inputs: {rows} rows in one request, over {MAX_ROWS_PER_REQUEST}",
                field="inputs",
            )
        if self._chunk is not None and rows % self._chunk:
            raise InvalidInput(
                f"inputs: {rows} rows is not a multiple of the model's batch {self._chunk}",
                field="inputs",
            )
        outputs = run_onnx(self._session, arrays, self._chunk)
        return {"outputs": {name: value.tolist() for name, value in outputs.items()}}

    def _array(self, name: str, value: Any) -> np.ndarray:
        sig: TensorSig | None = next((s for s in self.inputs if s.name == name), None)
        dtype = sig.dtype if sig is not None else None
        try:
            return np.asarray(value, dtype=dtype)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                f"inputs: {name!r} is not a rectangular array of {dtype or 'numbers'} ({exc})",
                field="inputs",
            ) from exc


def load_server(
    kind: str,
    model_path: Path | None = None,
    *,
    model_name: str = DEFAULT_EMBEDDING_MODEL,
    device: str = "cpu",
    threads: int = 1,
) -> Server:
    """Load the model a lease serves: ``"embeddings"`` (catalog) or ``"onnx"`` (a file)."""
    if kind == "embeddings":
        return EmbeddingsServer(model_name, device)
    if kind == "onnx":
        if model_path is None or not model_path.is_file():
            raise InvalidInput("model: an onnx endpoint needs the model file", field="model")
        return OnnxServer(model_path, device, threads)
    raise InvalidInput(
        f"serve: unknown endpoint kind {kind!r}",
        hint="Serve 'embeddings' or an .onnx model file.",
        field="serve",
    )


def parse_serve(workload: str) -> dict[str, str] | None:
    """What a lease's workload asks its provider to serve, or None for bare GPU time.

    ``serve:embeddings[:<catalog model>]`` or ``serve:onnx:<sha256 of the model file>``.
    """
    if not workload.startswith(SERVE_PREFIX):
        return None
    kind, _, rest = workload.removeprefix(SERVE_PREFIX).partition(":")
    if kind == "embeddings":
        return {"kind": kind, "model": catalog_model(rest or DEFAULT_EMBEDDING_MODEL).name}
    if kind == "onnx" and re.fullmatch(r"[0-9a-f]{64}", rest):
        return {"kind": kind, "model": rest}
    raise InvalidInput(
        f"workload: cannot serve {workload!r}",
        hint="Use serve:embeddings or serve:onnx:<sha256 of an uploaded .onnx file>.",
        field="workload",
    )


def openai_embeddings_response(
    vectors: np.ndarray | list[list[float]],
    model_name: str,
    texts: list[str],
    prompt_tokens: int | None = None,
    encoding_format: str = "float",
) -> dict[str, Any]:
    """The body of an OpenAI embeddings response for ``vectors`` (one per text).

    ``encoding_format="base64"`` packs each vector as little-endian float32 bytes, which
    is what the ``openai`` client asks for by default and decodes itself. Without a
    token count from the model's tokenizer, whitespace-separated words stand in.
    """
    array = np.asarray(vectors, dtype="<f4")
    if array.ndim != 2 or len(array) != len(texts):
        raise ValueError(f"{len(texts)} texts but vectors of shape {array.shape}")
    if encoding_format not in ("float", "base64"):
        raise InvalidInput(
            f"encoding_format: {encoding_format!r} is not 'float' or 'base64'",
            field="encoding_format",
        )
    tokens = prompt_tokens if prompt_tokens is not None else sum(len(t.split()) for t in texts)
    data = []
    for index, row in enumerate(array):
        embedding: list[float] | str
        if encoding_format == "base64":
            embedding = base64.b64encode(row.tobytes()).decode("ascii")
        else:
            embedding = row.tolist()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def openai_embeddings(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    """Answer an OpenAI ``POST /v1/embeddings`` request body with an embeddings server."""
    if not isinstance(server, EmbeddingsServer):
        raise InvalidInput(
            "model: this lease does not serve embeddings",
            hint="Use /invoke for an onnx endpoint.",
            field="model",
        )
    texts = _texts(body)
    if body.get("dimensions") not in (None, catalog_model(server.model_name).dim):
        raise InvalidInput(
            f"dimensions: {server.model_name} gives {catalog_model(server.model_name).dim}",
            field="dimensions",
        )
    return openai_embeddings_response(
        server.embed(texts),
        server.model_name,
        texts,
        prompt_tokens=server.count_tokens(texts),
        encoding_format=str(body.get("encoding_format") or "float"),
    )
