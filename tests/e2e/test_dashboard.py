"""The dashboard in a real browser: headless Chromium against a live network with a real job."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.identity import load_or_create_key
from gpudepin.workloads.scenes import demo_scene_path

pytestmark = [pytest.mark.e2e, pytest.mark.blender]

CHROMIUM = "/usr/bin/chromium"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll a condition of the live system until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork(tmp_path / "net", providers=2, port=0, assignment_ttl_s=4.0)
    (tmp_path / "net").mkdir()
    net.start()
    try:
        yield net
    finally:
        net.stop()


def test_the_dashboard_shows_a_finished_job_and_links_to_its_page(
    network: LocalNetwork, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    scene_sha = hashlib.sha256(demo_scene_path().read_bytes()).hexdigest()
    buyer = Client(network.api_url, load_or_create_key(network.home, "buyer"))
    buyer.faucet("10")
    wait_for("two providers", lambda: sum(p["online"] for p in buyer.providers()) == 2)
    job = buyer.submit_job("render", {"frames": "1-2"}, {"scene": demo_scene_path()}, "0.5")
    wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
    done = buyer.job(job["id"])
    assert done["state"] == "completed"
    # the volume is what the buyer paid: each frame at its winning bid (at most 0.5)
    paid = sum(Decimal(t["price"]) for t in done["tasks"])
    stats = httpx.get(f"{network.api_url}/v1/stats").json()["headline"]
    volume = stats["volume_24h"]
    assert stats["jobs_completed"] == 1 and Decimal(volume) == paid and 0 < paid <= 1
    cli = [sys.executable, "-m", "gpudepin", "--home", str(network.home)]
    out = subprocess.run([*cli, "stats", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["headline"]["providers_online"] == 2
    card = subprocess.run(
        [*cli, "economics", "viability", "--json"], capture_output=True, text=True, check=True
    )
    assert json.loads(card.stdout)["grade"] in {"A", "B", "C", "D"}

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(network.api_url + "/")
            card = page.locator('[data-figure="providers_online"] .v')
            assert card.inner_text() == "2"
            assert page.locator('[data-figure="jobs_completed"] .v').inner_text() == "1"
            assert page.locator('[data-figure="volume_24h"] .v').inner_text() == volume
            assert page.locator("#viability-grade").inner_text() in {"A", "B", "C", "D"}
            assert page.locator("#no-market").count() in (0, 1)
            assert page.locator("svg").count() >= 4
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            page.click(f'a[href="/jobs/{job["id"]}"]')
            page.wait_for_url(f"**/jobs/{job['id']}")
            assert page.locator("#job-state").inner_text() == "completed"
            assert page.locator('[data-state="accepted"]').count() == 2
            # the buyer's input file is not named on the public page, not even by its hash
            assert scene_sha[:12] not in page.content()
            page.screenshot(path=str(tmp_path / "job.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 20_000
