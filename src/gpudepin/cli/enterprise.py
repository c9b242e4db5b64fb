"""Enterprise-tier commands: ``jobs audit``, ``submit echo``, and the residency options."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gpudepin.cli.common import console, print_json, state
from gpudepin.cli.jobs import jobs_app, submit_app, watch_job
from gpudepin.cli.placement import (
    Deadline,
    DenyRegion,
    DenyTag,
    Region,
    RequireTag,
    Tier,
    terms,
)


def register(app: typer.Typer) -> None:
    """Add ``jobs audit`` and ``submit echo`` to the groups cli.jobs registers on ``app``."""
    jobs_app.command("audit")(jobs_audit)
    submit_app.command("echo")(submit_echo)


def jobs_audit(
    ctx: typer.Context, job_id: str, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Who ran every task, in which region, on what hardware, when; where data is kept."""
    with state(ctx).client() as client:
        audit = client.job_audit(job_id)
    if as_json:
        print_json(audit)
        return
    console.print(
        f"[bold]{audit['job_id']}[/bold] {audit['kind']} — {audit['state']} · tier "
        f"{audit['tier']} · residency {_residency_text(audit['residency'])}"
    )
    table = Table("task", "provider", "region", "gpu", "assigned", "outcome", "result kept in")
    for t in audit["tasks"]:
        for a in t["attempts"]:
            kept = (t["result"] or {}).get("store", "") if a["outcome"] == "accepted" else ""
            table.add_row(
                t["id"],
                a["provider"][:10] + ("…" if a["speculative"] is False else " (copy)"),
                a["region"] or "?",
                a["gpu_class"] or "?",
                f"{a['assigned_at']:.0f}",
                a["outcome"],
                kept,
            )
    console.print(table)
    for c in audit["sla_credits"]:
        console.print(f"SLA credit: {c['paid']} base units from {c['provider']}")


def _residency_text(res: dict[str, list[str]]) -> str:
    parts = [f"{k.replace('_', ' ')} {', '.join(v)}" for k, v in res.items() if v]
    return "; ".join(parts) or "anywhere"


def submit_echo(
    ctx: typer.Context,
    tasks: Annotated[int, typer.Option(help="Number of tasks.")] = 4,
    sleep_s: Annotated[float, typer.Option(help="Seconds each task sleeps.")] = 0.0,
    price: Annotated[str, typer.Option(help="Tokens per task.")] = "0.001",
    region: Region = None,
    deny_region: DenyRegion = None,
    require_tag: RequireTag = None,
    deny_tag: DenyTag = None,
    tier: Tier = "consumer",
    deadline: Deadline = None,
    wait: Annotated[bool, typer.Option(help="Show progress until the job ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A trivial job for testing a network (each task writes a line of text)."""
    with state(ctx).client() as client:
        job = client.submit_job(
            "echo",
            {"tasks": tasks, "sleep_s": sleep_s},
            {},
            price,
            **terms(region, deny_region, require_tag, deny_tag, tier, deadline),
        )
        if wait:
            job = watch_job(client, job["id"])
    if as_json:
        print_json(job)
    else:
        console.print(f"job [bold]{job['id']}[/bold]: {len(job['tasks'])} tasks, {job['state']}")
