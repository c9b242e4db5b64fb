"""The spot market through the API on SQLite and PostgreSQL: auctions, instant spot,
per-second leases, explanations, bad input, and clearing from two coordinators at once."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from gpudepin.client import Client
from gpudepin.coordinator import loops, market, store
from gpudepin.coordinator.app import create_app
from gpudepin.core import ledger
from gpudepin.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from gpudepin.core.money import UNIT
from gpudepin.settings import CoordinatorSettings
from gpudepin.workloads.echo import expected

PER_S = 10**14  # 0.36 tokens per GPU-hour, in base units per GPU-second


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

    def provider(self, name: str, region: str = "eu-west") -> Client:
        c = self.client()
        c.register_provider(name, region, f"op-{name}", {"gpu_class": "cpu"}, "t")
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


def make_net(tmp_path: Path, db_url: str | None) -> Iterator[Net]:
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
        audits=False,
        known_answer_rate=0.0,
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


def echo(buyer: Client, tasks: int, max_price: str = "1", **kw: object) -> dict:
    return buyer.submit_job("echo", {"tasks": tasks, "seed": 7}, {}, max_price, **kw)  # type: ignore[arg-type]


def run(prov: Client, task: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.txt"
        out.write_bytes(expected(task["job_spec"], task["task_spec"]))
        return prov.submit_result(task["id"], out, {"seconds": 0.1})


def test_batch_auction_splits_and_pays_each_winner_its_bid(net: Net) -> None:
    buyer = net.buyer()
    a, b, c = net.provider("a"), net.provider("b"), net.provider("c")
    job = echo(buyer, 4)
    assert a.poll(0) is None  # nobody may claim before the auction clears
    order = a.market_work()["orders"][0]
    assert order["id"] == job["id"] and order["quantity"] == 4
    a.place_bid(job["id"], UNIT // 10, 3, net.clock() + 60)  # cheapest, but only 3 tasks
    b.place_bid(job["id"], UNIT // 5, 4, net.clock() + 60)
    c.place_bid(job["id"], UNIT // 2, 4, net.clock() + 60)
    net.later(0.1, a, b, c)
    assert buyer.job(job["id"])["market"]["order_state"] == "open"  # 11 < 3 x 4: no early close
    net.later(2, a, b, c)
    shown = buyer.job(job["id"])["market"]
    assert shown["order_state"] == "awarded"
    assert {w["provider"]: w["quantity"] for w in shown["winners"]} == {a.address: 3, b.address: 1}
    assert {x["order_id"]: x["state"] for x in c.market_work()["bids"]} == {job["id"]: "lost"}
    assert c.poll(0) is None  # the loser cannot claim
    for prov in (a, a, a, b):
        task = prov.poll(0)
        assert task is not None
        assert run(prov, task)["state"] == "accepted"
    final = buyer.job(job["id"])
    paid = {t["provider"]: t["price"] for t in final["tasks"]}
    assert paid == {a.address: "0.1", b.address: "0.2"}
    net.later(1)
    assert buyer.job(job["id"])["state"] == "completed"
    # 3 x 0.1 + 0.2 spent; the rest of the 4-token escrow came back
    assert buyer.wallet()["available"] == "99.5"
    assert not ledger.imbalances(net.balances())


def test_a_winner_gone_silent_loses_the_award_and_the_order_opens_again(net: Net) -> None:
    buyer = net.buyer()
    a = net.provider("a")
    job = echo(buyer, 2)
    a.place_bid(job["id"], UNIT // 10, 2, net.clock() + 600)
    net.later(2.5, a)
    assert a.poll(0) is not None  # started, then the machine dies
    net.later(50)  # silent for longer than two assignment deadlines
    shown = buyer.job(job["id"])["market"]
    assert shown["order_state"] == "open" and shown["winners"][0]["state"] == "lapsed"
    b = net.provider("b")  # came online meanwhile: sees the reopened order and bids
    assert [o["id"] for o in b.market_work()["orders"]] == [job["id"]]
    b.place_bid(job["id"], UNIT // 5, 2, net.clock() + 600)
    net.later(2.5, b)
    for _ in range(2):
        task = b.poll(0)
        assert task is not None and run(b, task)["state"] == "accepted"
    net.later(1, b)
    done = buyer.job(job["id"])
    assert done["state"] == "completed" and {t["provider"] for t in done["tasks"]} == {b.address}
    assert a.poll(0) is None  # the lapsed winner may not claim any more


def test_a_lapsed_winner_that_comes_back_may_bid_and_win_again(net: Net) -> None:
    buyer = net.buyer()
    a = net.provider("a")
    job = echo(buyer, 1)
    a.place_bid(job["id"], UNIT // 10, 1, net.clock() + 600)
    net.later(2.5, a)
    net.later(50)  # the coordinator heard nothing from it (it was down, say): the award lapses
    assert buyer.job(job["id"])["market"]["order_state"] == "open"
    a.heartbeat()
    a.place_bid(job["id"], UNIT // 10, 1, net.clock() + 600)
    net.later(2.5, a)
    shown = buyer.job(job["id"])["market"]
    assert shown["order_state"] == "awarded" and shown["winners"][0]["state"] == "active"
    task = a.poll(0)
    assert task is not None and run(a, task)["state"] == "accepted"
    with pytest.raises(Conflict, match="takes no more bids"):
        a.place_bid(job["id"], UNIT // 10, 1, net.clock() + 600)


def test_bad_bids_and_orders_are_refused_with_reasons(net: Net) -> None:
    buyer = net.buyer()
    a = net.provider("a")
    job = echo(buyer, 2)
    t = net.clock() + 60
    with pytest.raises(InvalidInput, match="above the order's maximum"):
        a.place_bid(job["id"], 2 * UNIT, 1, t)
    with pytest.raises(InvalidInput, match="price"):
        a.place_bid(job["id"], 0, 1, t)
    a.place_bid(job["id"], UNIT // 2, 2, t)
    with pytest.raises(Conflict, match="already bid"):
        a.place_bid(job["id"], UNIT // 3, 2, t)
    stranger = net.client()  # signed in, but not a provider
    with pytest.raises(Forbidden):
        stranger.place_bid(job["id"], UNIT // 2, 1, t)
    with pytest.raises(NotFound):
        a.place_bid("jnope", UNIT // 2, 1, t)
    raw = TestClient(net.tc.app, base_url="http://testserver/v1")
    resp = raw.post(
        f"/orders/{job['id']}/bids",
        json={"price": "1", "capacity": 1, "valid_until": t, "signature": "0x00"},
    )
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"
    with pytest.raises(InvalidInput, match="max_price"):
        buyer.create_lease("cpu", 3600, "0")
    with pytest.raises(InvalidInput, match="unknown GPU class"):
        buyer.create_lease("rtx9999", 3600, "1")
    with pytest.raises(InvalidInput, match="region list is empty"):
        buyer.create_lease("cpu", 3600, "1", regions=[])
    with pytest.raises(InvalidInput, match="duration_s"):
        buyer.create_lease("cpu", 0, "1")
    with pytest.raises(InvalidInput, match="beyond the maximum"):
        buyer.create_lease("cpu", 365 * 86_400, "1")
    with pytest.raises(InvalidInput, match="unknown GPU class"):
        echo(buyer, 1, gpu_class="rtx9999")
    with pytest.raises(InvalidInput, match="amount must be positive"):
        echo(buyer, 1, max_price="-1")
    assert buyer.wallet()["available"] == "98"  # only the one good job's escrow is locked


def test_no_bids_fails_the_job_and_says_why(net: Net) -> None:
    buyer = net.buyer()
    net.provider("a", region="us-east")
    quote = buyer.quote("batch", "1", 2, gpu_class="cpu", regions=["eu-west"])
    assert not quote["would_match"]
    assert "none in eu-west" in quote["reasons"][0] and "us-east: 1" in quote["reasons"][0]
    job = echo(buyer, 2)  # the provider sees the order but never bids
    net.later(3)
    shown = buyer.job(job["id"])
    assert shown["state"] == "failed"
    assert "no provider bid on order" in shown["reason"]
    assert "none has posted an ask or bid" in shown["reason"]
    assert shown["market"]["explanation"]["funnel"]["providers"] == 1
    assert buyer.wallet()["available"] == "100"


def test_instant_spot_clears_at_the_best_ask_without_a_window(net: Net) -> None:
    buyer = net.buyer()
    a, b = net.provider("a"), net.provider("b")
    a.post_ask("lease", 3 * PER_S // 10, 1, net.clock() + 60)
    b.post_ask("lease", PER_S // 5, 1, net.clock() + 60)
    quote = buyer.quote("lease", "0.36", 1, duration_s=600, gpu_class="cpu")
    assert quote["instant"] and quote["clearing_price"] == "0.072/h"
    assert quote["at_clearing"]["fee"] == "0.0006"  # 5% of 0.012
    data = buyer.market()
    assert data["best_asks"][0]["price"] == "0.072/h" and data["best_asks"][0]["providers"] == 2
    lease = buyer.create_lease("cpu", 600, "0.36")
    assert lease["state"] == "pending" and lease["lease"]["provider"] == b.address
    assert buyer.market()["recent"][0]["last"] == "0.072/h"


def test_lease_bills_delivered_seconds_with_fee_and_stops_when_receipts_stop(net: Net) -> None:
    buyer = net.buyer()
    cheap, dear = net.provider("cheap"), net.provider("dear")
    lease = buyer.create_lease("cpu", 3600, "0.36")
    assert buyer.wallet()["escrow"] == "0.36"
    oid = lease["id"]
    cheap.place_bid(oid, PER_S // 2, 1, net.clock() + 600)
    dear.place_bid(oid, PER_S, 1, net.clock() + 600)
    net.later(2.5, cheap, dear)
    shown = buyer.lease(oid)
    assert shown["state"] == "pending" and shown["lease"]["provider"] == cheap.address
    assert cheap.market_work()["leases"][0]["id"] == oid
    assert oid in {p["address"]: p for p in buyer.providers()}[cheap.address]["leases"]
    cheap.start_lease(oid)
    net.later(10, cheap, dear)
    out = cheap.lease_receipt(oid, 10, net.clock())
    assert out["billed_seconds"] == 10
    assert cheap.lease_receipt(oid, 10, net.clock())["billed_seconds"] == 10  # replay: nothing
    net.later(30, cheap, dear)  # silent for longer than the 15 s grace
    shown = buyer.lease(oid)
    assert shown["state"] == "provider_lost"
    billed = 10 * PER_S // 2
    assert shown["lease"]["billed"] == "0.0005" and shown["lease"]["fees"] == "0.000025"
    assert cheap.wallet()["held"] == "0" and cheap.wallet()["earned"] == "0.000475"
    assert net.balances()[ledger.FEES] == billed * 5 // 100
    assert buyer.wallet()["escrow"] == "0"
    assert not ledger.imbalances(net.balances())
    with pytest.raises(Conflict):
        cheap.lease_receipt(oid, 20, net.clock())


def test_closing_early_refunds_and_a_non_starter_loses_the_lease(net: Net) -> None:
    buyer = net.buyer()
    lazy, keen = net.provider("lazy"), net.provider("keen")
    oid = buyer.create_lease("cpu", 3600, "0.36")["id"]
    lazy.place_bid(oid, PER_S // 4, 1, net.clock() + 600)
    keen.place_bid(oid, PER_S // 2, 1, net.clock() + 600)
    net.later(2.5, lazy, keen)
    assert buyer.lease(oid)["lease"]["provider"] == lazy.address
    net.later(11, lazy, keen)  # lazy never started within the 10 s
    shown = buyer.lease(oid)
    assert shown["lease"]["provider"] == keen.address and shown["lease"]["id"] == f"{oid}-2"
    keen.start_lease(f"{oid}-2")
    net.later(5, lazy, keen)
    keen.lease_receipt(f"{oid}-2", 5, net.clock())
    closed = buyer.close_lease(oid)
    assert closed["state"] == "closed"
    assert buyer.wallet()["escrow"] == "0"
    assert buyer.wallet()["available"] == "99.99975"  # 5 s at 0.18/h
    with pytest.raises(Conflict):
        buyer.close_lease(oid)
    with pytest.raises(Forbidden):
        net.buyer().close_lease(oid)


@pytest.mark.postgres
def test_two_coordinators_clearing_one_order_award_it_once(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    nets = [make_net(tmp_path / str(i), pg_url) for i in (1, 2)]
    first, second = next(nets[0]), next(nets[1])
    second.clock = first.clock
    second.rt.clock = first.clock
    buyer = first.buyer()
    a, b = first.provider("a"), first.provider("b")
    oid = buyer.create_lease("cpu", 600, "0.36")["id"]
    a.place_bid(oid, PER_S // 2, 1, first.clock() + 600)
    b.place_bid(oid, PER_S // 3, 1, first.clock() + 600)
    first.clock.t += 3
    barrier = threading.Barrier(2)
    results: list[str | None] = []

    def clear(rt: object) -> None:
        barrier.wait()
        with rt.engine.begin() as conn:  # type: ignore[attr-defined]
            results.append(market.clear_order(conn, oid, rt.clock(), rt.settings))  # type: ignore[attr-defined]

    threads = [threading.Thread(target=clear, args=(n.rt,)) for n in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("awarded") == 1 and results.count(None) == 1
    assert len(buyer.leases()) == 1 and buyer.lease(oid)["lease"]["provider"] == b.address
    for gen in nets:
        with pytest.raises(StopIteration):
            next(gen)


def test_unauthenticated_market_calls_are_refused(net: Net) -> None:
    raw = TestClient(net.tc.app, base_url="http://testserver/v1")
    for method, path in (("GET", "/market/work"), ("POST", "/leases"), ("POST", "/market/asks")):
        resp = raw.request(method, path, json={})
        assert resp.status_code == 401, path
        assert resp.json()["error"]["code"] == "unauthorized"
