"""Enterprise tier through the API: residency, eligibility, deadline credits, audit log."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from gpudepin.client import Client
from gpudepin.coordinator import loops, store
from gpudepin.coordinator.app import create_app
from gpudepin.core import ledger
from gpudepin.core.errors import InvalidInput, NoMatch
from gpudepin.core.money import UNIT
from gpudepin.settings import CoordinatorSettings
from gpudepin.workloads.echo import expected


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

    def provider(self, region: str, name: str = "p") -> Client:
        c = self.client()
        c.register_provider(name, region, f"op-{name}", {"gpu_class": "cpu"}, "t")
        return c

    def buyer(self) -> Client:
        b = self.client()
        b.faucet("100")
        return b

    def tick(self) -> None:
        loops.tick(self.rt)

    def make_enterprise(self, prov: Client, stake: int = 300 * UNIT) -> None:
        """Give ``prov`` a passed hardware proof and stake (uptime comes from heartbeats)."""
        prov.faucet(str(stake // UNIT))
        with self.rt.engine.begin() as conn:
            acct = ledger.available_account(prov.address)
            txn = ledger.stake(store.lock_balances(conn, [acct]), prov.address, stake)
            store.apply(conn, txn, self.clock())
            store.record(conn, self.clock(), "hardware_proof_passed", actor=prov.address)


@pytest.fixture(params=["sqlite", "postgres"])
def net(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Net]:
    try:  # placement is under test here, not the trust layer's own checks
        from gpudepin.coordinator import verification_http

        monkeypatch.setattr(verification_http, "claim_extra", lambda rt, who: None)
    except ImportError:
        pass
    db_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    clock = Clock()
    settings = CoordinatorSettings(
        home=tmp_path,
        db_url=db_url,
        assignment_ttl_s=20,
        enterprise_window_s=600,
        uptime_max_gap_s=60,
        standing_refresh_s=0,
        audits=False,  # the trust layer's audits are tested on their own
        known_answer_rate=0.0,
    )
    app = create_app(settings, run_loops=False, clock=clock)
    with TestClient(app) as tc:
        yield Net(tc, clock)


def echo(buyer: Client, tasks: int = 1, **terms: object) -> dict:
    return buyer.submit_job("echo", {"tasks": tasks, "seed": 7}, {}, "1", **terms)  # type: ignore[arg-type]


def run(prov: Client, task: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.txt"
        out.write_bytes(expected(task["job_spec"], task["task_spec"]))
        return prov.submit_result(task["id"], out, {"seconds": 0.1})


def test_residency_picks_providers_by_region_and_says_when_none_fits(net: Net) -> None:
    buyer = net.buyer()
    us1, us2, ap = (
        net.provider("us-east", "a"),
        net.provider("us-east", "b"),
        net.provider("ap-south"),
    )
    eu = {"allow_regions": ["eu-west", "eu-central"]}
    with pytest.raises(NoMatch) as err:
        echo(buyer, residency=eu)
    assert str(err.value.message) == (
        "0 of 3 registered providers are in an allowed region (eu-central, eu-west); "
        "providers are in us-east (2), ap-south (1)"
    )
    assert buyer.jobs() == [] and buyer.wallet()["available"] == "100"
    with pytest.raises(InvalidInput, match="unknown region"):
        echo(buyer, residency={"allow_regions": ["eu-wst"]})

    eu_prov = net.provider("eu-west", "eu")
    job = echo(buyer, residency={"require_tags": ["gdpr"], "deny_regions": ["uk-south"]})
    plain = echo(buyer)
    # the GDPR job is invisible to the US and APAC providers; they get the plain one
    assert us1.poll(0)["job_id"] == plain["id"]  # type: ignore[index]
    assert us2.poll(0) is None and ap.poll(0) is None
    task = eu_prov.poll(0)
    assert task is not None and task["job_id"] == job["id"]
    assert run(eu_prov, task)["state"] == "accepted"
    net.tick()
    audit = buyer.job_audit(job["id"])
    assert audit["residency"]["require_tags"] == ["gdpr"]
    (attempt,) = audit["tasks"][0]["attempts"]
    assert attempt["provider"] == eu_prov.address and attempt["region"] == "eu-west"
    assert attempt["gpu_class"] == "cpu" and attempt["outcome"] == "accepted"
    assert audit["tasks"][0]["result"]["store"] == "coordinator-database"  # came inline
    assert audit["state"] == "completed", audit
    assert audit["outputs"][0]["name"] == "echo.txt"


def beat_for(net: Net, provs: list[Client], seconds: int, every: int = 30) -> None:
    for _ in range(seconds // every):
        net.clock.t += every
        for p in provs:
            p.heartbeat()


def test_enterprise_jobs_go_only_to_proven_staked_providers_with_uptime(net: Net) -> None:
    buyer = net.buyer()
    good, flaky, unstaked = (net.provider("eu-west", n) for n in ("good", "flaky", "unstaked"))
    net.make_enterprise(good)
    net.make_enterprise(flaky)
    with pytest.raises(NoMatch, match="enterprise tier"):
        echo(buyer, tier="enterprise")
    beat_for(net, [good, unstaked], 600)  # flaky stays silent: 0% uptime
    net.tick()
    standing = {s["address"]: s for s in buyer.provider_standing()}
    assert standing[good.address]["enterprise_reasons"] == []
    assert any("uptime" in r for r in standing[flaky.address]["enterprise_reasons"])
    assert any("stake" in r for r in standing[unstaked.address]["enterprise_reasons"])
    job = echo(buyer, tier="enterprise")
    assert flaky.poll(0) is None and unstaked.poll(0) is None
    task = good.poll(0)
    assert task is not None and task["job_id"] == job["id"]


def test_a_late_enterprise_job_credits_the_buyer_from_the_providers_stake(net: Net) -> None:
    buyer = net.buyer()
    prov = net.provider("eu-west")
    net.make_enterprise(prov, stake=300 * UNIT)
    beat_for(net, [prov], 600)
    net.tick()
    job = echo(buyer, tasks=2, tier="enterprise", deadline_s=60.0)
    for _ in range(2):
        task = prov.poll(0)
        assert task is not None
        assert run(prov, task)["state"] == "accepted"
    net.clock.t += 80  # 20 s late: over 10% of the allowed 60 s, under 50%: 25% credit
    net.tick()
    net.tick()  # settled once, however many passes run
    assert buyer.job(job["id"])["state"] == "completed"
    # paid 2 tokens for the job; 25% of that comes back from the stake
    assert buyer.wallet()["available"] == "98.5"
    bals = buyer._send("GET", "/ledger/balances", auth=False)
    assert int(bals[ledger.stake_account(prov.address)]) == 300 * UNIT - UNIT // 2
    assert buyer.ledger_summary()["balanced"]
    credits = buyer.job_audit(job["id"])["sla_credits"]
    assert [c["paid"] for c in credits] == [str(UNIT // 2)]


def test_an_on_time_enterprise_job_credits_nothing(net: Net) -> None:
    buyer = net.buyer()
    prov = net.provider("eu-west")
    net.make_enterprise(prov)
    beat_for(net, [prov], 600)
    net.tick()
    job = echo(buyer, tier="enterprise", deadline_s=600.0)
    task = prov.poll(0)
    assert task is not None and run(prov, task)["state"] == "accepted"
    net.tick()
    assert buyer.job(job["id"])["state"] == "completed"
    assert buyer.wallet()["available"] == "99"
    assert buyer.job_audit(job["id"])["sla_credits"] == []
