"""Real processes: a served lease fails over when its provider is killed, and the buyer's
endpoint address answers again from the other provider; the outage is on the SLA report
(`gpudepin lease sla`) against the dead provider."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.cli.main import app
from gpudepin.client import Client
from gpudepin.core.errors import GpudepinError
from gpudepin.identity import load_or_create_key
from gpudepin.workloads.inference import make_demo_onnx

pytestmark = pytest.mark.e2e


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll a condition of the live system until it holds (bounded); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork(
        tmp_path / "net", providers=2, port=0, assignment_ttl_s=4.0, bid_window_s=3.0,
        lease_grace_s=4.0, extra_coordinator_args=["--no-audits", "--gateway-stale", "3"],
    )  # fmt: skip
    net.start()
    try:
        yield net
    finally:
        net.stop()


def answer(buyer: Client, lease_id: str, x: list[list[float]]) -> dict[str, Any] | None:
    try:
        return buyer.lease_invoke(lease_id, {"inputs": {"x": x}})
    except GpudepinError:
        return None


def test_killing_the_serving_provider_fails_over_to_the_same_address(
    net: LocalNetwork, tmp_path: Path
) -> None:
    buyer = Client(net.api_url, load_or_create_key(net.home, "buyer"))
    buyer.faucet("100")
    wait_for("two providers", lambda: sum(p["online"] for p in buyer.providers()) == 2)
    model = buyer.upload(make_demo_onnx(tmp_path / "m.onnx"))
    workload = f"serve:onnx:{model}"
    oid = buyer.create_lease(None, 600, "100", workload=workload, uptime=99.9, failover=True)["id"]
    x = [[0.5] * 16]
    first = wait_for("the endpoint to answer", lambda: answer(buyer, oid, x))
    serving = buyer.lease(oid)["lease"]["provider"]
    names = {load_or_create_key(net.home, f"provider-{i}").address.lower(): i for i in (1, 2)}
    net.kill(f"provider-{names[serving]}")  # kill -9 the agent serving the endpoint

    # the same address answers again, now from the other provider
    again = wait_for("the endpoint to answer after failover", lambda: answer(buyer, oid, x), 120)
    assert again == first  # same model, same answer
    lease = buyer.lease(oid)["lease"]
    assert lease["id"] == f"{oid}-2" and lease["provider"] != serving
    sla = buyer.lease_sla(oid)
    assert sla["failover"] and sla["providers"][0]["state"] == "provider_lost"
    assert sla["providers"][0]["provider"] == serving

    # the buyer reads the SLA from the CLI: the outage counts against the killed provider
    cli = ["--home", str(net.home), "--key", "buyer", "lease", "sla", oid]
    out = CliRunner().invoke(app, [*cli, "--json"])
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    assert shown["uptime_target"] == 99.9 and shown["measured_uptime"] < 100
    assert shown["outages"] and {o["provider"] for o in shown["outages"]} == {serving}
    assert any("failover" in o["source"] for o in shown["outages"])  # however fast it was
    text = CliRunner().invoke(app, cli)
    assert text.exit_code == 0 and "target 99.9%" in text.output and serving in text.output
