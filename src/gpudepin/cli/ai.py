"""AI commands: ``submit infer``, ``submit train``, and ``endpoint`` for served leases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gpudepin.cli import placement
from gpudepin.cli.common import console, print_json, state
from gpudepin.cli.jobs import _finish, submit_app, watch_job
from gpudepin.client import Client
from gpudepin.core.errors import InvalidInput

endpoint_app = typer.Typer(help="Use the model a lease serves.", no_args_is_help=True)
ai_app = typer.Typer(help="AI workloads: demo files to try them with.", no_args_is_help=True)

Wait = Annotated[bool, typer.Option(help="Show progress until the job ends, then download.")]
Out = Annotated[Path, typer.Option("-o", "--out", help="Where --wait downloads the outputs.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the job as JSON.")]


def register(app: typer.Typer) -> None:
    """``submit infer`` and ``submit train`` join ``submit``; ``endpoint`` is a group."""
    submit_app.command("infer")(submit_infer)
    submit_app.command("train")(submit_train)
    app.add_typer(endpoint_app, name="endpoint")
    app.add_typer(ai_app, name="ai")


@ai_app.command("demo-files")
def demo_files(
    dest: Annotated[Path, typer.Argument(help="Folder to write them into.")] = Path("ai-demo"),
) -> None:
    """Write files to try every AI job with: an ONNX model and its inputs, texts, the
    scikit-learn digits dataset and a training spec (nothing is downloaded)."""
    import numpy as np

    from gpudepin.workloads.inference import make_demo_onnx
    from gpudepin.workloads.training import demo_spec, make_digits_npz

    dest.mkdir(parents=True, exist_ok=True)
    make_demo_onnx(dest / "model.onnx")
    rows = np.random.default_rng(0).normal(size=(4096, 16)).astype(np.float32)
    np.savez(dest / "x.npz", x=rows)
    texts = [f"GPU number {i} rents by the second" for i in range(256)]
    (dest / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    make_digits_npz(dest / "digits.npz")
    (dest / "spec.toml").write_text(demo_spec("mlp", steps=300, checkpoint_interval=50))
    for name in ("model.onnx", "x.npz", "texts.jsonl", "digits.npz", "spec.toml"):
        console.print(f"  wrote {dest / name}")


def _file(path: Path | None, what: str) -> Path | None:
    if path is not None and not path.is_file():
        raise typer.BadParameter(f"no such file: {path}", param_hint=what)
    return path


def _submit(
    ctx: typer.Context,
    kind: str,
    params: dict[str, Any],
    files: dict[str, Path],
    price: str,
    wait: bool,
    out: Path,
    as_json: bool,
    terms: dict[str, Any],
) -> None:
    with state(ctx).client() as client:
        job = client.submit_job(kind, params, files, price, **terms)
        if as_json and not wait:
            print_json(job)
            return
        console.print(
            f"job [bold]{job['id']}[/bold]: {len(job['tasks'])} tasks, "
            f"escrow {job['escrow']} tokens"
        )
        if wait:
            job = watch_job(client, job["id"])
            _finish(client, job, out / job["id"])


def submit_infer(
    ctx: typer.Context,
    model: Annotated[Path | None, typer.Option(help="Your ONNX model file.")] = None,
    inputs: Annotated[
        Path | None, typer.Option(help=".npz (one array per model input) or .npy; axis 0 = rows.")
    ] = None,
    catalog: Annotated[
        str | None, typer.Option(help="A catalog model instead, e.g. all-minilm-l6-v2.")
    ] = None,
    texts: Annotated[
        Path | None, typer.Option(help="Texts for a catalog model: JSONL or one per line.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Rows per task.")] = None,
    max_price_per_task: Annotated[str, typer.Option(help="Tokens offered per task.")] = "0.01",
    wait: Wait = False,
    out: Out = Path("."),
    as_json: AsJson = False,
    region: placement.Region = None,
    deny_region: placement.DenyRegion = None,
    require_tag: placement.RequireTag = None,
    deny_tag: placement.DenyTag = None,
    tier: placement.Tier = "consumer",
    deadline: placement.Deadline = None,
) -> None:
    """Batch inference: an ONNX model over arrays, or a catalog model over texts.

    Rows are split into tasks across providers; the merged output is in input order.
    """
    params: dict[str, Any] = {}
    files: dict[str, Path] = {}
    if catalog is not None:
        if model is not None or inputs is not None:
            raise InvalidInput("give either --model/--inputs or --catalog/--texts, not both")
        params["model"] = catalog
        files["texts"] = _file(texts, "--texts") or _missing("--texts")
    else:
        params["model"] = "onnx"
        files["model"] = _file(model, "--model") or _missing("--model")
        files["inputs"] = _file(inputs, "--inputs") or _missing("--inputs")
    if batch_size is not None:
        params["batch_size"] = batch_size
    terms = placement.terms(region, deny_region, require_tag, deny_tag, tier, deadline)
    _submit(ctx, "infer", params, files, max_price_per_task, wait, out, as_json, terms)


def _missing(option: str) -> Path:
    raise InvalidInput(
        f"{option.lstrip('-')}: missing", hint=f"Pass {option} (see --help).", field=option
    )


def submit_train(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="The training spec (TOML); see docs/ai.md.")],
    dataset: Annotated[
        Path, typer.Option(help=".npz with features and labels, or a UTF-8 text for the LM.")
    ],
    max_price_per_task: Annotated[str, typer.Option(help="Tokens offered for the run.")] = "1",
    wait: Wait = False,
    out: Out = Path("."),
    as_json: AsJson = False,
    region: placement.Region = None,
    deny_region: placement.DenyRegion = None,
    require_tag: placement.RequireTag = None,
    deny_tag: placement.DenyTag = None,
    tier: placement.Tier = "consumer",
    deadline: placement.Deadline = None,
) -> None:
    """Reproducible training from a spec: weights, loss curve and signed commitments.

    If the provider dies, another resumes from the last checkpoint it uploaded.
    """
    files = {"spec": _file(spec, "SPEC") or spec, "dataset": _file(dataset, "--dataset") or dataset}
    terms = placement.terms(region, deny_region, require_tag, deny_tag, tier, deadline)
    _submit(ctx, "train", {}, files, max_price_per_task, wait, out, as_json, terms)


def serve_workload(client: Client, serve: str) -> str:
    """The lease workload for ``--serve``: ``embeddings`` (or a catalog name) or a .onnx
    file, which is checked here and uploaded."""
    from gpudepin.workloads.inference import CATALOG

    if serve == "embeddings":
        return "serve:embeddings"
    if serve in CATALOG:
        return f"serve:embeddings:{serve}"
    path = Path(serve)
    if path.suffix.lower() != ".onnx" or not path.is_file():
        raise InvalidInput(
            f"serve: {serve!r} is neither 'embeddings' nor an .onnx file",
            hint=f"Serve embeddings, one of {', '.join(sorted(CATALOG))}, or model.onnx.",
            field="serve",
        )
    from gpudepin.workloads.inference import onnx_signature

    onnx_signature(path)  # refuse a broken model before paying for a lease
    return f"serve:onnx:{client.upload(path)}"


def print_endpoint(info: dict[str, Any]) -> None:
    """The served model, readiness and latency figures of a lease, as a short table."""
    serve = info.get("serve") or {}
    console.print(
        f"endpoint of {info['lease_id']}: {serve.get('kind', '-')} {serve.get('model', '')}"
        f" — {'ready' if info.get('ready') else 'not ready'} (lease {info['state']})"
    )
    lat = info.get("latency_ms") or {}
    table = Table("requests", "errors", "p50 ms", "p95 ms", "p99 ms")
    table.add_row(
        str(info.get("requests", 0)),
        str(info.get("errors", 0)),
        *(str(lat.get(q) if lat.get(q) is not None else "-") for q in ("p50", "p95", "p99")),
    )
    console.print(table)


@endpoint_app.command("show")
def endpoint_show(
    ctx: typer.Context, lease_id: str, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """What a lease serves, whether it is ready, and its request latency p50/p95/p99."""
    with state(ctx).client() as client:
        info = client.lease_endpoint(lease_id)
    print_json(info) if as_json else print_endpoint(info)


@endpoint_app.command("invoke")
def endpoint_invoke(
    ctx: typer.Context,
    lease_id: str,
    payload: Annotated[
        str, typer.Argument(help='JSON, e.g. \'{"input": ["hello"]}\' for embeddings.')
    ],
) -> None:
    """Send one request to the lease's model and print the answer as JSON."""
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise InvalidInput(f"payload: not JSON ({exc})", field="payload") from exc
    if not isinstance(body, dict):
        raise InvalidInput("payload: expected a JSON object", field="payload")
    with state(ctx).client() as client:
        print_json(client.lease_invoke(lease_id, body))


@endpoint_app.command("openai")
def endpoint_openai(ctx: typer.Context, lease_id: str) -> None:
    """Print the base URL and API key for the `openai` client (embeddings leases)."""
    with state(ctx).client() as client:
        print_json(
            {"base_url": client.lease_openai_base_url(lease_id), "api_key": client.session_token()}
        )
