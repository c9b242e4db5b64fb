"""Real processes: a large output lives only as shards on agents' disks and survives one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.identity import load_or_create_key
from gpudepin.workloads.echo import expected

pytestmark = pytest.mark.e2e


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll a condition of the live system until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork(
        tmp_path,
        providers=4,
        port=0,
        assignment_ttl_s=4.0,
        offer_disk_gb=0.01,
        extra_coordinator_args=[
            "--no-audits",
            "--shard-k=2",
            "--shard-n=3",
            "--shard-threshold-kb=1",
            "--no-keep-coordinator-copy",
            "--shard-offline=3",
        ],
    )
    net.start()
    try:
        yield net
    finally:
        net.stop()


def held(buyer: Client, job_id: str) -> list[dict]:
    (out,) = buyer.job_audit(job_id)["outputs"]
    return [s for s in out.get("shards", []) if s["state"] == "held"]


def test_output_on_shards_survives_a_killed_holder(network: LocalNetwork, tmp_path: Path) -> None:
    buyer = Client(network.api_url, load_or_create_key(network.home, "buyer"))
    buyer.faucet("10")
    wait_for("four providers", lambda: sum(p["online"] for p in buyer.providers()) == 4)
    job = buyer.submit_job("echo", {"tasks": 2, "seed": 9, "bytes": 20_000}, {}, "0.1")
    wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
    done = buyer.job(job["id"])
    assert done["state"] == "completed", done["reason"]
    want = b"".join(expected(done["spec"], {"index": i}) for i in range(2))
    wait_for("three held shards", lambda: len(held(buyer, job["id"])) == 3)
    sha = done["outputs"][0]["sha256"]
    blob = network.home / "blobs" / sha[:2] / sha
    wait_for("the coordinator to drop its copy", lambda: not blob.exists())

    (first,) = buyer.download_outputs(job["id"], tmp_path / "first")
    assert first.read_bytes() == want

    names = {
        load_or_create_key(network.home, f"provider-{i}").address.lower(): i for i in range(1, 5)
    }
    victim = held(buyer, job["id"])[0]["provider"]
    network.kill(f"provider-{names[victim]}")
    wait_for(
        "the lost shard re-created on another provider",
        lambda: len(h := held(buyer, job["id"])) == 3 and victim not in {s["provider"] for s in h},
    )
    on_disk = list((network.home / "agents").glob(f"provider-*/shards/{sha}/*"))
    assert len(on_disk) >= 3  # the dead agent's file stays on its disk, uncounted
    (second,) = buyer.download_outputs(job["id"], tmp_path / "second")
    assert second.read_bytes() == want
