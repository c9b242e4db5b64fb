"""Commands that run parts of the network: ``coordinator``, ``provider``, ``up``, ``demo``."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gpudepin import SERVER_KEEPALIVE_S
from gpudepin.cli.common import console, state
from gpudepin.cli.jobs import watch_job
from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.core.errors import GpudepinError
from gpudepin.identity import load_or_create_key

provider_app = typer.Typer(
    help="Run a provider agent and see what it earned.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command()(coordinator)
    app.command()(up)
    app.command()(demo)
    app.add_typer(provider_app, name="provider")


def coordinator(
    ctx: typer.Context,
    db: Annotated[
        str | None, typer.Option(help="Database URL (postgresql://...). Default: SQLite in HOME.")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8470,
    max_upload_mb: Annotated[int, typer.Option(help="Largest upload accepted, in MiB.")] = 256,
    assignment_ttl: Annotated[
        float, typer.Option(help="Seconds of agent silence before its tasks are requeued.")
    ] = 20.0,
    faucet: Annotated[
        bool, typer.Option(help="Credit free test tokens (local networks only).")
    ] = True,
    hold_window: Annotated[
        float, typer.Option(help="Seconds earnings stay held (challenge window) before release.")
    ] = 7 * 86_400.0,
    unbonding: Annotated[
        float, typer.Option(help="Seconds unstaked tokens stay slashable before release.")
    ] = 14 * 86_400.0,
    verification_seed: Annotated[
        int, typer.Option(help="Seed of the audit draws (with each task id: reproducible).")
    ] = 0,
    chain_rpc: Annotated[
        str | None,
        typer.Option(help="Settle on the EVM chain at this JSON-RPC URL (see docs/chain.md)."),
    ] = None,
    chain_config: Annotated[
        Path | None, typer.Option(help="Deployed addresses and chain id. Default: HOME/chain.json.")
    ] = None,
    chain_keys: Annotated[
        Path | None,
        typer.Option(help="Folder of settlement/arbiter/minter .key files. Default: HOME/keys."),
    ] = None,
    confirmations: Annotated[
        int, typer.Option(help="Blocks on top of a chain event before it counts.")
    ] = 0,
    epoch_interval: Annotated[
        float, typer.Option(help="Seconds between settlement epochs (roots posted on chain).")
    ] = 3600.0,
    audits: Annotated[
        bool, typer.Option(help="Re-run a seeded sample of accepted results on other providers.")
    ] = True,
    shard_k: Annotated[int, typer.Option(help="Shards needed to rebuild a large output.")] = 4,
    shard_n: Annotated[int, typer.Option(help="Shards a large output is cut into.")] = 8,
    shard_threshold_kb: Annotated[
        int, typer.Option(help="Outputs larger than this are erasure-coded onto providers' disks.")
    ] = 8192,
    keep_coordinator_copy: Annotated[
        bool, typer.Option(help="Keep a large output in the coordinator's blob store as well.")
    ] = True,
    shard_offline: Annotated[
        float, typer.Option(help="Seconds of silence after which a holder's shards are re-created.")
    ] = 300.0,
    market: Annotated[
        bool, typer.Option(help="Auction every job and lease (off: the max price is paid).")
    ] = True,
    bid_window: Annotated[float, typer.Option(help="Seconds an auction takes bids.")] = 30.0,
    market_cover: Annotated[
        int, typer.Option(help="Close an auction early once bids cover the order this often.")
    ] = 2,
    start_timeout: Annotated[
        float, typer.Option(help="Seconds a winner has to start before it loses the award.")
    ] = 120.0,
    lease_grace: Annotated[
        float, typer.Option(help="Seconds without usage receipts before a lease stops billing.")
    ] = 90.0,
    gateway_stale: Annotated[
        float, typer.Option(help="Seconds of silence after which a serving provider is down.")
    ] = 10.0,
) -> None:
    """Run the coordinator (HTTP API on /v1, OpenAPI at /docs)."""
    import uvicorn

    from gpudepin.coordinator.app import create_app
    from gpudepin.settings import CoordinatorSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = CoordinatorSettings(
        home=state(ctx).home,
        db_url=db,
        host=host,
        port=port,
        max_upload_bytes=max_upload_mb * 1024 * 1024,
        assignment_ttl_s=assignment_ttl,
        faucet=faucet,
        hold_window_s=hold_window,
        unbonding_s=unbonding,
        verification_seed=verification_seed,
        chain_rpc=chain_rpc,
        chain_config=chain_config,
        chain_keys_dir=chain_keys,
        chain_confirmations=confirmations,
        epoch_interval_s=epoch_interval,
        audits=audits,
        shard_k=shard_k,
        shard_n=shard_n,
        shard_threshold_bytes=shard_threshold_kb * 1024,
        shard_keep_coordinator_copy=keep_coordinator_copy,
        shard_offline_s=shard_offline,
        market=market,
        market_bid_window_s=bid_window,
        market_cover=market_cover,
        market_start_timeout_s=start_timeout,
        lease_grace_s=lease_grace,
        gateway_stale_s=gateway_stale,
    )
    app = create_app(settings)
    # SQLite gives up the GIL around every statement; with the default 5 ms switch
    # interval a transaction holding the writer lock waits up to 5 ms to get it back
    # after each one while request threads run Python, so writes queued behind it.
    sys.setswitchinterval(0.0005)
    # agents come back every few seconds (heartbeats every 10 s, long polls of 10 s): with
    # uvicorn's 5 s keep-alive a connection was often closed just as an agent reused it,
    # and that request failed ("server disconnected without sending a response")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_keep_alive=SERVER_KEEPALIVE_S,
        loop=_event_loop(),
    )


def _event_loop() -> str:
    """uvloop that accepts every waiting connection at once (coordinator.serving), where
    uvloop is installed; asyncio's own loop elsewhere."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "gpudepin.coordinator.serving:EagerAcceptLoop"


@provider_app.command("start")
def provider_start(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Display name.")] = "provider",
    region: Annotated[str, typer.Option(help="Region you are in, e.g. eu-west.")] = "local",
    operator: Annotated[
        str, typer.Option(help="Operator (the person or company running the agent).")
    ] = "",
    threads: Annotated[int, typer.Option(help="CPU threads per task.")] = 1,
    task_timeout: Annotated[float, typer.Option(help="Seconds before a task is killed.")] = 3600.0,
    offer_disk_gb: Annotated[
        float, typer.Option(help="Disk to offer for erasure-coded shards of others' outputs, GB.")
    ] = 0.0,
    market: Annotated[bool, typer.Option(help="Bid on market orders and run leases.")] = True,
    strategy: Annotated[
        str | None, typer.Option(help="Pricing strategy: cost, or package.module:Class.")
    ] = None,
    electricity_price: Annotated[
        float | None, typer.Option(help="Your electricity price, USD per kWh (cost strategy).")
    ] = None,
    margin: Annotated[float | None, typer.Option(help="Margin over your cost, e.g. 0.25.")] = None,
    token_price: Annotated[float | None, typer.Option(help="USD per token, to price in.")] = None,
    asks: Annotated[
        bool | None, typer.Option("--asks/--no-asks", help="Post standing asks (instant spot).")
    ] = None,
) -> None:
    """Run a provider agent: register this machine and take work from the coordinator.

    Market settings come from HOME/agents/NAME/provider.toml ([strategy], [market];
    docs/market.md), and these flags override them."""
    from gpudepin.provider.agent import AgentConfig, run_agent
    from gpudepin.provider.hardware import detect

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    st = state(ctx)
    if st.coordinator is None:
        raise typer.BadParameter(
            "give the coordinator's URL with --coordinator URL (before `provider`)"
        )
    key = st.key if st.key != "buyer" else name
    client = Client(st.coordinator, load_or_create_key(st.home, key))
    workdir = st.home / "agents" / key
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = AgentConfig(
        name=name,
        region=region,
        operator=operator,
        threads=threads,
        task_timeout_s=task_timeout,
        offer_disk_bytes=int(offer_disk_gb * 1e9),
    )
    if market:
        from gpudepin.provider.bidder import CONFIG_NAME, load_market_config
        from gpudepin.provider.strategy import load_strategy

        cfg.market = load_market_config(
            workdir / CONFIG_NAME,
            dict(
                strategy=strategy,
                electricity_price=electricity_price,
                margin=margin,
                token_price=token_price,
                asks=asks,
            ),
        )
        load_strategy(cfg.market.strategy, cfg.market.settings)  # a bad setting stops us here
    run_agent(client, cfg, detect(), workdir)


def _serve_until_interrupted(net: LocalNetwork) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            for name, proc in list(net.procs.items()):
                if proc.poll() is not None:
                    console.print(f"[yellow]{name} exited with code {proc.returncode}[/yellow]")
                    net.procs.pop(name)
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass


def up(
    ctx: typer.Context,
    providers: Annotated[int, typer.Option(help="Number of local provider agents.")] = 3,
    port: Annotated[int, typer.Option(help="Coordinator port (another free one if taken).")] = 8470,
    db: Annotated[str | None, typer.Option(help="Database URL. Default: SQLite in HOME.")] = None,
    chain: Annotated[
        bool, typer.Option(help="Settle on a local Anvil chain (kept in HOME/chain).")
    ] = True,
    epoch_interval: Annotated[
        float, typer.Option(help="Seconds between settlement epochs on the local chain.")
    ] = 10.0,
) -> None:
    """Run a whole network here: coordinator + provider agents. Ctrl-C stops every process."""
    net = LocalNetwork(
        state(ctx).home,
        providers=providers,
        port=port,
        db_url=db,
        chain=chain,
        epoch_interval_s=epoch_interval,
    )
    url = net.start()
    console.print(f"gpudepin is up: API {url}  (docs {url}/docs)")
    if net.chain_note:
        console.print(net.chain_note, soft_wrap=True)
    console.print(f"{providers} provider agents; logs in {net.home / 'logs'}; Ctrl-C stops it all")
    try:
        _serve_until_interrupted(net)
    finally:
        net.stop()
        console.print("stopped")


def demo(
    ctx: typer.Context,
    providers: Annotated[int, typer.Option(help="Number of local provider agents.")] = 3,
    # twelve frames keep the demo within two minutes on two cores, audits included
    frames: Annotated[str, typer.Option(help="Frames of the demo scene to render.")] = "1-12",
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Where to save the frames.")
    ] = None,
    chain: Annotated[
        bool, typer.Option(help="Pay through a local Anvil chain (deposit, epoch roots).")
    ] = True,
) -> None:
    """Start a local network, render a small animation across it, and show who did what."""
    from gpudepin.workloads.scenes import demo_scene_path

    st = state(ctx)
    net = LocalNetwork(st.home, providers=providers, port=0, chain=chain)
    started = time.monotonic()
    console.print(
        f"starting a local network (coordinator + {providers} provider agents) in {st.home} …"
    )
    url = net.start()
    if net.chain_note:
        console.print(net.chain_note, soft_wrap=True)
    try:
        with Client(url, load_or_create_key(st.home, st.key)) as client:
            _wait_for_providers(client, providers)
            if net.chain_rpc:
                from gpudepin.cli.chain import deposit_on_chain

                deposit_on_chain(st, client, "100")
            else:
                client.faucet("100")
                console.print("credited 100 free test tokens to the buyer (local faucet)")
            job = client.submit_job(
                "render", {"frames": frames}, {"scene": demo_scene_path()}, "0.01"
            )
            console.print(
                f"submitted render job {job['id']}: {len(job['tasks'])} frames, "
                f"escrow {job['escrow']} tokens"
            )
            job = watch_job(client, job["id"])
            if job["state"] != "completed":
                raise GpudepinError(f"the demo job {job['state']}: {job.get('reason')}")
            dest = out or st.home / "demo-output" / job["id"]
            files = client.download_outputs(job["id"], dest)
            if net.chain_rpc:
                _report_chain(client)
            _report(client, job, files, time.monotonic() - started)
    finally:
        net.stop()


def _report_chain(client: Client) -> None:
    """Where the demo's money stands on chain (epochs close every few seconds)."""
    s = client.chain_status()
    last, rec = s.get("last_epoch"), s.get("reconciliation")
    if last:
        console.print(
            f"on chain: epoch {last['number']} {last['state']} (tx {last['tx_hash']}); "
            f"vault reconciled: {'ok' if rec and rec['ok'] else 'NO'}; to claim, run "
            "`gpudepin up` then `gpudepin --key provider-1 provider claim`",
            soft_wrap=True,
        )


def _wait_for_providers(client: Client, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(p["online"] for p in client.providers()) < n:
        if time.monotonic() > deadline:
            raise GpudepinError(f"fewer than {n} providers registered within {timeout:.0f}s")
        time.sleep(0.2)


def _report(client: Client, job: dict, files: list[Path], seconds: float) -> None:
    names = {p["address"]: p["name"] for p in client.providers()}
    table = Table("frame", "provider", "attempts")
    for t in job["tasks"]:
        table.add_row(
            t["label"], names.get(t["provider"], t["provider"] or "?"), str(t["attempts"])
        )
    console.print(table)
    per = Counter(names.get(t["provider"], "?") for t in job["tasks"])
    console.print("frames per provider: " + ", ".join(f"{k} {v}" for k, v in sorted(per.items())))
    for f in files:
        console.print(f"saved {f}")
    summary = client.ledger_summary()
    console.print(
        "ledger: "
        + ", ".join(f"{k} {v}" for k, v in sorted(summary["totals"].items()))
        + ("  — balanced" if summary["balanced"] else f"  — PROBLEMS {summary['problems']}")
    )
    console.print(f"demo finished in {seconds:.1f}s")
