"""Buyer commands: ``submit`` and ``jobs``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gpudepin.cli import placement
from gpudepin.cli.common import console, print_json, state
from gpudepin.client import Client
from gpudepin.core.errors import GpudepinError

submit_app = typer.Typer(help="Submit work to the network.", no_args_is_help=True)
jobs_app = typer.Typer(help="See, download and cancel your jobs.", no_args_is_help=True)

TERMINAL = {"completed", "failed", "cancelled"}
STATES = ("pending", "assigned", "submitted", "accepted")


def register(app: typer.Typer) -> None:
    app.add_typer(submit_app, name="submit")
    app.add_typer(jobs_app, name="jobs")


def watch_job(client: Client, job_id: str, poll_s: float = 0.5) -> dict[str, Any]:
    """Show one progress bar per task state until the job ends; return the final job."""
    job = client.job(job_id)
    total = len(job["tasks"])
    with Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bars = {s: progress.add_task(s, total=total) for s in STATES}
        while True:
            for s in STATES:
                progress.update(bars[s], completed=job["counts"].get(s, 0))
            if job["state"] in TERMINAL:
                break
            time.sleep(poll_s)  # polling a remote API, not synchronising tests
            job = client.job(job_id)
    return job


def _download(client: Client, job: dict[str, Any], out: Path) -> list[Path]:
    files = client.download_outputs(job["id"], out)
    for f in files:
        console.print(f"  saved {f}")
    return files


@submit_app.command("render")
def submit_render(
    ctx: typer.Context,
    scene: Annotated[Path, typer.Argument(help="The .blend scene to render.")],
    frames: Annotated[str, typer.Option(help="Frame range, e.g. 1-24.")] = "1-24",
    price_per_frame: Annotated[
        str,
        typer.Option(
            "--max-price-per-frame",
            "--price-per-frame",
            help="Most tokens paid per frame; the auction's winners are paid their own bids.",
        ),
    ] = "0.01",
    gpu: Annotated[str | None, typer.Option(help="Required GPU class, e.g. rtx4090.")] = None,
    resolution: Annotated[int | None, typer.Option(help="Resolution percentage (1-100).")] = None,
    samples: Annotated[int | None, typer.Option(help="Cycles samples per pixel.")] = None,
    chunk: Annotated[int, typer.Option(help="Frames per task.")] = 1,
    fmt: Annotated[str, typer.Option("--format", help="PNG or EXR.")] = "PNG",
    wait: Annotated[
        bool, typer.Option(help="Show progress until the job ends, then download.")
    ] = False,
    out: Annotated[
        Path, typer.Option("-o", "--out", help="Where --wait downloads the frames.")
    ] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
    region: placement.Region = None,
    deny_region: placement.DenyRegion = None,
    require_tag: placement.RequireTag = None,
    deny_tag: placement.DenyTag = None,
    tier: placement.Tier = "consumer",
    deadline: placement.Deadline = None,
) -> None:
    """Render a Blender scene across the network, one task per frame (or chunk)."""
    if not scene.is_file():
        raise typer.BadParameter(f"no such file: {scene}", param_hint="SCENE")
    params: dict[str, Any] = {"frames": frames, "chunk": chunk, "format": fmt}
    if resolution is not None:
        params["resolution_percent"] = resolution
    if samples is not None:
        params["samples"] = samples
    with state(ctx).client() as client:
        job = client.submit_job(
            "render",
            params,
            {"scene": scene},
            price_per_frame,
            gpu_class=gpu,
            **placement.terms(region, deny_region, require_tag, deny_tag, tier, deadline),
        )
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


def _finish(client: Client, job: dict[str, Any], out: Path) -> None:
    if job["state"] == "completed":
        console.print(f"job {job['id']} completed")
        _download(client, job, out)
    else:
        raise GpudepinError(
            f"job {job['id']} {job['state']}: {job.get('reason') or 'no reason given'}"
        )


@jobs_app.command("list")
def jobs_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Your jobs, newest first."""
    with state(ctx).client() as client:
        rows = client.jobs()
    if as_json:
        print_json(rows)
        return
    table = Table("id", "kind", "state", "escrow", "reason")
    for j in rows:
        table.add_row(j["id"], j["kind"], j["state"], j["escrow"], j["reason"] or "")
    console.print(table)


@jobs_app.command("show")
def jobs_show(
    ctx: typer.Context,
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    events: Annotated[
        bool, typer.Option(help="Include the event log (who did what, when).")
    ] = False,
    verification: Annotated[
        bool, typer.Option(help="Show the audits: what was re-run, hashes, verdicts.")
    ] = False,
) -> None:
    """One job: state, tasks and who ran each."""
    with state(ctx).client() as client:
        if verification:
            from gpudepin.cli.verification import print_verification

            report = client.job_verification(job_id)
            print_json(report) if as_json else print_verification(report)
            return
        job = client.job(job_id, events=events)
        page = f"{client.base_url}/jobs/{job_id}"
    if as_json:
        print_json(job)
        return
    counts = ", ".join(f"{k} {v}" for k, v in sorted(job["counts"].items()))
    console.print(
        f"[bold]{job['id']}[/bold] {job['kind']} — {job['state']}"
        f"{' (' + job['reason'] + ')' if job['reason'] else ''}"
    )
    console.print(f"escrow {job['escrow']} · {job['price_per_task']} per task unit · {counts}")
    console.print(f"dashboard page: {page}")
    if job.get("market"):
        from gpudepin.cli.market import print_auction

        print_auction(job["market"])
    table = Table("task", "label", "state", "attempts", "provider")
    for t in job["tasks"]:
        table.add_row(t["id"], t["label"], t["state"], str(t["attempts"]), t["provider"] or "")
    console.print(table)
    for o in job["outputs"]:
        console.print(f"output {o['name']} ({o['size']} bytes)")
    for e in job.get("events", []):
        console.print(f"{e['at']:.3f} {e['kind']} {e.get('task_id') or ''} {e.get('actor') or ''}")


@jobs_app.command("download")
def jobs_download(
    ctx: typer.Context,
    job_id: str,
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder to save into.")] = Path("."),
) -> None:
    """Download a completed job's outputs."""
    with state(ctx).client() as client:
        _download(client, client.job(job_id), out)


@jobs_app.command("cancel")
def jobs_cancel(ctx: typer.Context, job_id: str) -> None:
    """Cancel a job; unspent escrow returns to your balance."""
    with state(ctx).client() as client:
        job = client.cancel(job_id)
    console.print(f"job {job['id']} {job['state']}")
