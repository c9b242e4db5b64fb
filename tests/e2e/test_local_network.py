"""Real processes: a coordinator and provider agents render with Blender on this machine."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.identity import load_or_create_key
from gpudepin.workloads.scenes import demo_scene_path

pytestmark = [pytest.mark.e2e, pytest.mark.blender]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll a condition of the live system until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork(tmp_path, providers=0, port=0, assignment_ttl_s=4.0)
    net.start()
    try:
        yield net
    finally:
        net.stop()


def buyer_of(net: LocalNetwork) -> Client:
    client = Client(net.api_url, load_or_create_key(net.home, "buyer"))
    client.faucet("10")
    return client


def online(client: Client) -> int:
    return sum(p["online"] for p in client.providers())


def frames_in(zip_path: Path) -> list[np.ndarray]:
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        return [np.asarray(Image.open(zf.open(n)).convert("RGB")) for n in names]


def test_frames_render_across_agents_and_download(network: LocalNetwork, tmp_path: Path) -> None:
    for i in (1, 2):
        network.start_provider(i)
    buyer = buyer_of(network)
    wait_for("two providers", lambda: online(buyer) == 2)
    job = buyer.submit_job("render", {"frames": "1-3"}, {"scene": demo_scene_path()}, "0.1")
    wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
    done = buyer.job(job["id"])
    assert done["state"] == "completed", done["reason"]
    files = buyer.download_outputs(job["id"], tmp_path / "out")
    frames = frames_in(next(f for f in files if f.name.endswith(".zip")))
    assert len(frames) == 3
    h, w = done["spec"]["height"], done["spec"]["width"]
    for px in frames:
        assert px.shape == (h, w, 3)
        assert px.std() > 5, "a frame is blank"
    assert not np.array_equal(frames[0], frames[2]), "the animation does not move"
    assert {t["provider"] for t in done["tasks"]} <= {p["address"] for p in buyer.providers()}


def test_a_provider_killed_mid_frame_is_replaced_and_nobody_is_paid_twice(
    network: LocalNetwork,
) -> None:
    network.start_provider(1)
    buyer = buyer_of(network)
    wait_for("a provider", lambda: online(buyer) == 1)
    job = buyer.submit_job("render", {"frames": "1-2"}, {"scene": demo_scene_path()}, "1")
    wait_for("a frame to be taken", lambda: buyer.job(job["id"])["counts"].get("assigned", 0) > 0)
    victim = next(t for t in buyer.job(job["id"])["tasks"] if t["state"] == "assigned")
    network.kill("provider-1")
    network.start_provider(2)
    wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
    done = buyer.job(job["id"])
    assert done["state"] == "completed", done["reason"]
    redone = next(t for t in done["tasks"] if t["id"] == victim["id"])
    assert redone["attempts"] >= 2 and redone["provider"] != victim["provider"]
    summary = buyer.ledger_summary()
    assert summary["balanced"]
    paid = sum(
        float(v)
        for k, v in summary["totals"].items()
        if k not in ("world", "available", "escrow")  # earned, held, fees, burned, claimable
    )
    # each frame paid exactly once, at the winning bid (at most the 1-token maximum)
    prices = [float(t["price"]) for t in done["tasks"]]
    assert paid == pytest.approx(sum(prices)) and all(0 < p <= 1 for p in prices)
    assert float(buyer.wallet()["available"]) == pytest.approx(10 - sum(prices))


def test_the_coordinator_restarted_mid_job_resumes_from_its_database(
    network: LocalNetwork,
) -> None:
    for i in (1, 2):
        network.start_provider(i)
    buyer = buyer_of(network)
    wait_for("two providers", lambda: online(buyer) == 2)
    job = buyer.submit_job("render", {"frames": "1-6"}, {"scene": demo_scene_path()}, "0.1")
    wait_for("a first frame", lambda: buyer.job(job["id"])["counts"].get("accepted", 0) > 0)
    network.restart_coordinator()
    wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
    done = buyer.job(job["id"])
    assert done["state"] == "completed", done["reason"]
    assert done["counts"] == {"accepted": 6}
    assert buyer.ledger_summary()["balanced"]
