"""A local network for the AI benchmarks: a coordinator and one agent on this machine.

Posted prices and no audits for batch work (an auction window or an auditor's re-run
would be measured as network overhead but is policy, not plumbing); the market on for
leases, which need it. The agent runs tasks with 1 intra-op thread, as the direct runs do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.identity import load_or_create_key


def _until(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


@contextmanager
def local_network(root: Path, market: bool = False) -> Iterator[tuple[LocalNetwork, Client]]:
    """A started network with one online agent, and a funded buyer's client."""
    args = ["--no-audits", "--max-upload-mb", "16384"] + ([] if market else ["--no-market"])
    net = LocalNetwork(
        root / "net", providers=0, port=0, bid_window_s=2.0, extra_coordinator_args=args
    )
    net.start()
    try:
        net.start_provider(1)
        buyer = Client(net.api_url, load_or_create_key(net.home, "buyer"), timeout=600)
        buyer.faucet("1000")
        _until("the agent", lambda: any(p["online"] for p in buyer.providers()), 60)
        yield net, buyer
    finally:
        net.stop()


def run_job(
    buyer: Client, kind: str, params: dict[str, object], files: dict[str, Path], out: Path
) -> list[Path]:
    """Submit, wait for the end, download; raise if the job did not complete."""
    job = buyer.submit_job(kind, params, files, "1")
    _until("the job", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"), 24 * 3600)
    done = buyer.job(job["id"])
    if done["state"] != "completed":
        raise RuntimeError(f"job {job['id']} {done['state']}: {done['reason']}")
    return buyer.download_outputs(job["id"], out)


def serving_lease(buyer: Client, workload: str) -> str:
    """Create a lease serving ``workload`` and wait until its endpoint answers."""
    lease_id = str(buyer.create_lease(None, 3600, "100", workload=workload)["id"])
    _until("the lease to start", lambda: buyer.lease(lease_id)["state"] == "active", 300)
    _until("the model to load", lambda: buyer.lease_endpoint(lease_id)["ready"], 300)
    return lease_id
