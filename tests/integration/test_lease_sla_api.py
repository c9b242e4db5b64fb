"""Lease uptime SLA, failover and replicas through the API in-process, with the real SDK: a
provider dies, the lease fails over to another provider at once and keeps its address, the
outage counts against the dead provider, and the breach pays the buyer from its stake
once; a request to a slow replica is hedged to another and answered within a bound."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpudepin.client import Client
from gpudepin.coordinator import db, lease_sla, loops, store
from gpudepin.coordinator.app import create_app
from gpudepin.core import ledger
from gpudepin.core.errors import Forbidden, InvalidInput, NotFound, Unavailable
from gpudepin.core.money import parse_amount
from gpudepin.settings import CoordinatorSettings

PER_S = 10**14  # base units per GPU-second: 0.36 tokens per GPU-hour


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


class Net:
    def __init__(self, tc: TestClient, clock: Clock) -> None:
        self.tc = tc
        self.clock = clock
        self.rt = tc.app.state.rt  # type: ignore[attr-defined]

    def client(self) -> Client:
        http = TestClient(self.tc.app, base_url="http://testserver/v1")
        return Client("http://testserver", Account.create(), http=http)

    def provider(self, name: str) -> Client:
        c = self.client()
        c.register_provider(name, "eu-west", f"op-{name}", {"gpu_class": "cpu"}, "t")
        c.faucet("50")
        c.stake("50")
        return c

    def buyer(self) -> Client:
        b = self.client()
        b.faucet("100")
        return b

    def later(self, seconds: float, *alive: Client) -> None:
        """Let time pass; ``alive`` providers heartbeat at the end of it."""
        self.clock.t += seconds
        for p in alive:
            p.heartbeat()
        loops.tick(self.rt)

    def balances(self) -> dict[str, int]:
        with self.rt.engine.connect() as conn:
            return store.all_balances(conn)


def make_net(tmp_path: Path, db_url: str | None, **extra: Any) -> Iterator[Net]:
    clock = Clock()
    settings = CoordinatorSettings(
        home=tmp_path,
        db_url=db_url,
        assignment_ttl_s=20,
        market=True,
        market_bid_window_s=2.0,
        market_cover=3,
        market_start_timeout_s=10.0,
        lease_grace_s=15.0,
        lease_sla_max_gap_s=3.0,
        lease_probe_s=1.0,
        audits=False,
        known_answer_rate=0.0,
        **extra,
    )
    app = create_app(settings, run_loops=False, clock=clock)
    with TestClient(app) as tc:
        yield Net(tc, clock)


@pytest.fixture(params=["sqlite", "postgres"])
def net(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Net]:
    from gpudepin.coordinator import verification_http

    monkeypatch.setattr(verification_http, "claim_extra", lambda rt, who: None)
    db_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    yield from make_net(tmp_path, db_url)


def auction(net: Net, buyer: Client, cheap: Client, dear: Client, **kw: Any) -> str:
    oid = buyer.create_lease("cpu", 200, "0.36", **kw)["id"]
    cheap.place_bid(oid, PER_S // 2, 1, net.clock() + 600)
    dear.place_bid(oid, PER_S, 1, net.clock() + 600)
    net.later(2.5, cheap, dear)
    assert buyer.lease(oid)["lease"]["provider"] == cheap.address
    return oid


def serve(net: Net, prov: Client, lease_id: str, seconds: int, *alive: Client) -> None:
    """The provider delivers ``seconds`` of the lease, one signed receipt a second."""
    for i in range(1, seconds + 1):
        net.later(1, prov, *alive)
        prov.lease_receipt(lease_id, i, net.clock())


def test_a_dead_provider_fails_over_and_its_outage_pays_the_buyer_once(net: Net) -> None:
    buyer = net.buyer()
    a, b = net.provider("a"), net.provider("b")
    oid = auction(net, buyer, a, b, uptime=99.9, failover=True)
    a.start_lease(oid)
    serve(net, a, oid, 60, b)
    escrow = buyer.wallet()["escrow"]
    for _ in range(17):  # a dies: no receipts, no heartbeats, past the 15 s grace
        net.later(1, b)
    shown = buyer.lease(oid)
    assert shown["lease"]["provider"] == b.address and shown["lease"]["id"] == f"{oid}-2"
    assert buyer.wallet()["escrow"] == escrow  # kept for the new provider, not refunded
    b.start_lease(f"{oid}-2")
    serve(net, b, f"{oid}-2", 30, b)

    live = buyer.lease_sla(oid)
    assert live["uptime_target"] == 99.9 and live["failover"] and not live["settled"]
    (outage,) = live["outages"]
    assert outage["provider"] == a.address and "heartbeat" in outage["source"]
    assert 17 <= outage["duration_s"] <= 20
    assert live["measured_uptime"] < 95  # ~18 s down of ~108: the whole fee is owed
    assert b.lease_sla(oid)["lease_id"] == oid  # providers of the lease may read it too
    with pytest.raises(Forbidden):
        net.buyer().lease_sla(oid)

    before = net.balances()
    buyer.close_lease(oid)
    net.later(1)
    net.later(1)  # a second pass must not pay again
    done = buyer.lease_sla(oid)
    assert done["settled"] and done["credited"] == done["credit_owed"]
    credit = parse_amount(done["credited"])
    fee_paid = parse_amount(done["fee_paid"])
    assert credit == fee_paid > 0  # below 95%: 100% of what the buyer paid
    after = net.balances()
    stake_a, stake_b = ledger.stake_account(a.address), ledger.stake_account(b.address)
    assert after[stake_a] == before[stake_a] - credit  # the dead provider pays it all
    assert after[stake_b] == before[stake_b]
    assert not ledger.imbalances(after)
    with net.rt.engine.connect() as conn:
        credits = conn.execute(
            select(db.ledger_entries.c.txn_id).where(db.ledger_entries.c.kind == "sla_credit")
        )
        assert len({r.txn_id for r in credits}) == 1  # paid exactly once


def test_with_no_bid_left_the_lease_reopens_and_the_lost_provider_may_not_bid(net: Net) -> None:
    buyer = net.buyer()
    a, b = net.provider("a"), net.provider("b")
    oid = buyer.create_lease("cpu", 200, "0.36", uptime=99.9, failover=True)["id"]
    a.place_bid(oid, PER_S, 1, net.clock() + 600)  # the only bid
    net.later(2.5, a, b)
    a.start_lease(oid)
    serve(net, a, oid, 5, b)
    for _ in range(17):  # a goes silent past the grace: no bid left, a fresh window
        net.later(1, b)
    assert buyer.lease(oid)["order_state"] == "open"
    assert buyer.lease_sla(oid)["uptime_target"] == 99.9
    a.heartbeat()  # a comes back, but it failed this lease once
    with pytest.raises(Forbidden, match="you lost"):
        a.place_bid(oid, PER_S // 2, 1, net.clock() + 600)
    b.place_bid(oid, PER_S, 1, net.clock() + 600)
    net.later(2.5, b)
    assert buyer.lease(oid)["lease"]["provider"] == b.address
    # the enterprise tier carries these terms without asking
    assert lease_sla.terms_for("enterprise", None, None, 1) == {
        "uptime_target": 0.999,
        "failover": True,
        "replicas": 1,
    }
    assert lease_sla.terms_for("consumer", None, None, 1) is None


def test_a_lease_that_met_its_target_pays_nothing_and_best_effort_has_no_sla(net: Net) -> None:
    buyer = net.buyer()
    a, b = net.provider("a"), net.provider("b")
    oid = auction(net, buyer, a, b, tier=None, uptime=99.0)
    a.start_lease(oid)
    serve(net, a, oid, 20, b)
    buyer.close_lease(oid)
    net.later(1)
    sla = buyer.lease_sla(oid)
    assert sla["uptime_target"] == 99.0 and sla["measured_uptime"] == 100.0
    assert sla["settled"] and sla["outages"] == [] and sla["credited"] == "0"
    plain = buyer.create_lease("cpu", 200, "0.36")["id"]
    assert buyer.lease_sla(plain)["uptime_target"] is None
    with pytest.raises(InvalidInput, match="uptime"):
        buyer.create_lease("cpu", 200, "0.36", uptime=101)


class FakeAgent:
    """Answers relayed requests (and the coordinator's probes) as a serving agent would."""

    def __init__(self, client: Client, lease_id: str, delay: float = 0.0) -> None:
        self.client = client
        self.lease_id = lease_id
        self.delay = delay  # seconds each request takes (a slow replica)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            for r in self.client.lease_requests(self.lease_id, 0.2)["requests"]:
                if r["op"] != "probe":
                    self.stop.wait(self.delay)
                out = {"ok": True} if r["op"] == "probe" else {"served_by": self.client.address}
                with contextlib.suppress(NotFound):  # its hedged twin answered first
                    self.client.lease_respond(self.lease_id, r["id"], out)

    def kill(self) -> None:
        self.stop.set()
        self.thread.join(5)


def until(cond: Any, what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def serving_net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    from gpudepin.coordinator import verification_http

    monkeypatch.setattr(verification_http, "claim_extra", lambda rt, who: None)
    yield from make_net(tmp_path, None, gateway_stale_s=0.5, lease_failover_s=3.0)


def test_failed_probes_fail_a_served_lease_over_and_its_address_answers_again(
    serving_net: Net,
) -> None:
    net = serving_net
    buyer = net.buyer()
    a, b = net.provider("a"), net.provider("b")
    oid = auction(net, buyer, a, b, workload="serve:embeddings", failover=True)
    a.start_lease(oid)
    agent = FakeAgent(a, oid)
    until(lambda: buyer.lease_endpoint(oid)["ready"], "a's endpoint never became ready")
    assert buyer.lease_invoke(oid, {"input": "x"}) == {"served_by": a.address}
    net.later(1, a, b)  # a probe goes through the relay and a answers it
    agent.kill()  # a's process dies
    until(lambda: not buyer.lease_endpoint(oid)["ready"], "the gateway never saw a go")
    with pytest.raises(Unavailable):
        buyer.lease_invoke(oid, {"input": "x"})
    for _ in range(5):  # probes fail for longer than lease_failover_s, well inside the grace
        net.later(1, b)
    shown = buyer.lease(oid)["lease"]
    assert shown["id"] == f"{oid}-2" and shown["provider"] == b.address
    b.start_lease(f"{oid}-2")
    agent_b = FakeAgent(b, f"{oid}-2")
    try:
        # the same address the buyer used before reaches the new provider
        answer = until(lambda: _try(buyer, oid), "the endpoint never answered after failover")
        assert answer == {"served_by": b.address}
    finally:
        agent_b.kill()
    sla = buyer.lease_sla(oid)
    assert [p["provider"] for p in sla["providers"]] == [a.address, b.address]
    assert sla["providers"][0]["state"] == "provider_lost"


def _try(buyer: Client, oid: str) -> dict[str, Any] | None:
    try:
        return buyer.lease_invoke(oid, {"input": "x"})
    except Unavailable:
        return None


def test_a_slow_replica_is_hedged_and_the_answer_comes_within_the_bound(
    serving_net: Net,
) -> None:
    net = serving_net
    buyer = net.buyer()
    a, b = net.provider("a"), net.provider("b")
    a.post_ask("lease", 10**13, 1, net.clock() + 600)
    b.post_ask("lease", 2 * 10**13, 1, net.clock() + 600)
    oid = buyer.create_lease("cpu", 600, "1", workload="serve:embeddings", replicas=2)["id"]
    assert buyer.lease(oid)["lease"]["provider"] == a.address
    assert buyer.lease(f"{oid}r2")["lease"]["provider"] == b.address  # another machine
    a.start_lease(oid)
    b.start_lease(f"{oid}r2")
    slow, fast = FakeAgent(a, oid, delay=3.0), FakeAgent(b, f"{oid}r2")
    try:
        for lease_id in (oid, f"{oid}r2"):
            until(lambda lid=lease_id: buyer.lease_endpoint(lid)["ready"], "a replica not ready")
        floor = net.rt.settings.gateway_hedge_floor_s
        for i in range(4):
            began = time.monotonic()
            # the request goes to a first (the buyer's own order leads the group) and stalls
            out = buyer.lease_invoke(oid, {"input": f"request {i}"})
            took = time.monotonic() - began
            assert out == {"served_by": b.address}
            assert took < floor + 1.0 < slow.delay  # hedged: bounded by the floor, not a
        shown = buyer.lease_endpoint(oid)
        assert shown["hedged_requests"] >= 1 and shown["replicas"] == [oid, f"{oid}r2"]
    finally:
        slow.kill()
        fast.kill()
    buyer.close_lease(oid)  # closing the buyer's lease closes its replicas
    assert buyer.lease(f"{oid}r2")["state"] == "closed"
    with pytest.raises(InvalidInput, match="replicas"):
        buyer.create_lease("cpu", 600, "1", replicas=2)
