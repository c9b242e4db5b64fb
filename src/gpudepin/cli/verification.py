"""Trust-layer commands: ``provider stake|unstake|reputation`` and the printer of
``jobs show ID --verification``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from gpudepin.cli.common import console, print_json, state


def register(app: typer.Typer) -> None:
    from gpudepin.cli.network import provider_app

    provider_app.command("stake")(stake)
    provider_app.command("unstake")(unstake)
    provider_app.command("reputation")(reputation)


def _show_stake(s: dict[str, Any]) -> None:
    console.print(
        f"{s['address']}: staked {s['staked']} · unbonding {s['unbonding']} · held {s['held']}"
    )
    for p in s["pending_unbonds"]:
        console.print(f"  {p['amount']} unbonding, released at {p['release_at']:.0f}")


def stake(
    ctx: typer.Context,
    amount: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Bond AMOUNT of your available tokens as stake (slashable on a proven fault)."""
    with state(ctx).client() as client:
        s = client.stake(amount)
    print_json(s) if as_json else _show_stake(s)


def unstake(
    ctx: typer.Context,
    amount: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Start unbonding AMOUNT of stake; it stays slashable until the delay passes."""
    with state(ctx).client() as client:
        s = client.unstake(amount)
    print_json(s) if as_json else _show_stake(s)


def reputation(
    ctx: typer.Context,
    address: Annotated[
        str | None, typer.Argument(help="Provider address (default: yours).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A provider's record: verified tasks, faults, reputation, stake, hardware proof."""
    with state(ctx).client() as client:
        r = client.reputation(address)
    if as_json:
        print_json(r)
        return
    ban = f"  BANNED: {r['ban_reason']}" if r["banned"] else ""
    console.print(
        f"{r['address']} ({r['gpu_class']}): reputation {r['reputation']:.3f} · "
        f"verified {r['verified']} · faults {r['faults']} · audit rate {r['audit_rate']:.0%}"
        f"{ban}"
    )
    proof = "proven" if r["hardware_proven"] else "not proven"
    console.print(
        f"stake {r['staked']} · unbonding {r['unbonding']} · held {r['held']} · hardware {proof}"
    )


def print_verification(report: dict[str, Any]) -> None:
    """Each verification case of a job: what was re-run, by whom, the hashes and verdict."""
    table = Table("task", "provider", "state", "re-run", "checkers", "verdict")
    for c in report["cases"]:
        ev = c.get("evidence") or {}
        checkers = ", ".join(f"{k['role']} {k['checker'][:10]} {k['state']}" for k in c["checks"])
        table.add_row(
            c["task_id"],
            c["provider"][:10],
            c["state"],
            c["rerun"] or "",
            checkers,
            ev.get("reason", ""),
        )
    console.print(table)
    for c in report["cases"]:
        ev = c.get("evidence")
        if not ev:
            continue
        console.print(f"[bold]{c['task_id']}[/bold] {ev['verdict']}: {ev['reason']}")
        for party, sha in ev["output_hashes"].items():
            sig = ev["receipt_signatures"].get(party, "")
            console.print(f"  {party}: output {sha[:16]}… signed {sig[:18]}…")
        for what, detail in ev["commitments"].items():
            console.print(f"  {what}: {detail}")
        if ev["faulty"]:
            console.print(f"  at fault: {', '.join(ev['faulty'])}")
    for d in report.get("disputes", []):
        _print_dispute(d)


def _print_dispute(d: dict[str, Any]) -> None:
    """A training dispute: each bisection round's hashes, the referee's step, the ruling."""
    start, end = d["segment"]
    console.print(
        f"[bold]dispute {d['id']}[/bold] of {d['task_id']} ({d['state']}): steps {start}-{end}, "
        f"{d['rounds']} of at most {d['round_bound']} rounds, interval {d['interval']}"
    )
    names = {d["provider"]: "provider", d["challenger"]: "auditor"}
    for i, rnd in enumerate(d["history"], 1):
        hashes = " · ".join(f"{names.get(p, p)} {h[:16]}…" for p, h in rnd["answers"].items())
        console.print(f"  round {i}, step {rnd['step']}: {hashes}")
    if d["referee"]:
        r = d["referee"]
        console.print(
            f"  referee ({r['by']}) re-ran step {r['step'][0]}->{r['step'][1]}: {r['hash'][:16]}…"
        )
    if d["reason"]:
        loser = d["loser"] or ("both parties" if d["winner"] is None else "none")
        console.print(f"  ruling: {d['reason']} (loses: {loser})")
