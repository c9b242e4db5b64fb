"""Stragglers through the API: a speculative copy races a slow task; one result wins."""

from __future__ import annotations

import base64
import hashlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from gpudepin.client import Client
from gpudepin.coordinator import loops
from gpudepin.coordinator.app import create_app
from gpudepin.core.errors import Forbidden, RaceLost
from gpudepin.identity import result_message, sign_text
from gpudepin.settings import CoordinatorSettings
from gpudepin.workloads.echo import expected

TYPICAL_S = 10.0  # how long the first tasks of the class take


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

    def provider(self, name: str, region: str) -> Client:
        c = self.client()
        c.register_provider(name, region, f"op-{name}", {"gpu_class": "cpu"}, "t")
        return c

    def tick(self) -> None:
        loops.tick(self.rt)


@pytest.fixture(params=["sqlite", "postgres"])
def net(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Net]:
    from gpudepin.coordinator import verification_http

    # races are under test here, not the trust layer's own checks
    monkeypatch.setattr(verification_http, "claim_extra", lambda rt, who: None)
    db_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    clock = Clock()
    settings = CoordinatorSettings(
        home=tmp_path,
        db_url=db_url,
        assignment_ttl_s=60,
        straggler_multiple=1.5,
        straggler_min_samples=3,
        audits=False,
        known_answer_rate=0.0,
    )
    app = create_app(settings, run_loops=False, clock=clock)
    with TestClient(app) as tc:
        yield Net(tc, clock)


def run(prov: Client, task: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.txt"
        out.write_bytes(expected(task["job_spec"], task["task_spec"]))
        return prov.submit_result(task["id"], out, {"seconds": 0.1})


def straggle(net: Net) -> tuple[Client, Client, Client, dict, dict]:
    """Three tasks take 10 s on A; the fourth is stuck on A until B gets a copy of it."""
    buyer = net.client()
    buyer.faucet("100")
    job = buyer.submit_job("echo", {"tasks": 4, "seed": 3}, {}, "1")
    a, b = net.provider("a", "eu-west"), net.provider("b", "us-east")
    for _ in range(3):
        task = a.poll(0)
        net.clock.t += TYPICAL_S
        assert run(a, task)["state"] == "accepted"
    net.tick()  # learns the class's p95: 10 s
    stuck = a.poll(0)
    net.clock.t += 1.5 * TYPICAL_S - 1
    net.tick()
    assert b.poll(0) is None, "a copy started before 1.5 x p95"
    net.clock.t += 2
    net.tick()
    copy = b.poll(0)
    assert copy is not None and copy["id"] == stuck["id"], "the straggler got no copy"
    assert b.poll(0) is None and net.provider("c", "eu-central").poll(0) is None, "two copies"
    return buyer, a, b, job, stuck


def finish(net: Net, buyer: Client, job: dict) -> dict:
    net.tick()
    done = buyer.job(job["id"])
    assert done["state"] == "completed", done
    summary = buyer.ledger_summary()
    assert summary["balanced"], summary["problems"]
    return done


def test_copy_that_finishes_first_wins_and_the_straggler_is_refused_unpaid(net: Net) -> None:
    buyer, a, b, job, stuck = straggle(net)
    net.clock.t += 3
    assert run(b, stuck)["state"] == "accepted"
    net.clock.t += 5
    with pytest.raises(RaceLost, match="raced by a speculative copy"):
        run(a, stuck)
    done = finish(net, buyer, job)
    assert {t["provider"] for t in done["tasks"]} == {a.address, b.address}
    # the buyer paid 4 tasks once each; A its three, B the raced one; A's late run nothing
    assert buyer.wallet()["available"] == "96"
    assert (a.wallet()["held"], a.wallet()["earned"]) == ("2.85", "0")
    assert (b.wallet()["held"], b.wallet()["earned"]) == ("0.95", "0")
    raced = buyer.job_audit(job["id"])["tasks"][3]["attempts"]
    assert [(x["provider"], x["speculative"], x["outcome"]) for x in raced] == [
        (a.address, False, "cancelled"),
        (b.address, True, "accepted"),
    ]


def test_original_that_finishes_first_wins_and_the_copy_is_paid_for_its_time(net: Net) -> None:
    buyer, a, b, job, stuck = straggle(net)
    net.clock.t += 1  # the copy runs one second, at 1 token over a 10 s p95
    assert run(a, stuck)["state"] == "accepted"
    net.clock.t += 5
    with pytest.raises(RaceLost, match="raced by a speculative copy"):
        run(b, stuck)
    assert b.poll(0) is None  # nothing left to run: the copy moved on
    finish(net, buyer, job)
    assert buyer.wallet()["available"] == "96"
    assert (a.wallet()["held"], a.wallet()["earned"]) == ("3.8", "0")
    # paid for one second from the protocol's fees, never from the buyer
    assert (b.wallet()["held"], b.wallet()["earned"]) == ("0", "0.1")
    assert buyer.ledger_summary()["totals"]["protocol:fees"] == "0.1"


@pytest.mark.parametrize("net", ["sqlite"], indirect=True)  # the race rules above cover PG
def test_copy_of_a_straggler_that_goes_silent_takes_its_place(net: Net) -> None:
    buyer, a, b, job, stuck = straggle(net)
    net.clock.t += 50
    b.heartbeat()  # only B is alive
    net.clock.t += 20
    net.tick()  # A's assignment expires: B's copy becomes the attempt, not a requeue
    assert net.provider("d", "eu-central").poll(0) is None
    assert run(b, stuck)["state"] == "accepted"
    with pytest.raises(Forbidden):
        run(a, stuck)
    finish(net, buyer, job)
    assert b.wallet()["held"] == "0.95" and a.wallet()["held"] == "2.85"


def _item(prov: Client, task: dict) -> dict:
    data = expected(task["job_spec"], task["task_spec"])
    sha = hashlib.sha256(data).hexdigest()
    sig = sign_text(prov.account, result_message(task["id"], sha))
    body = {"task_id": task["id"], "sha256": sha, "signature": sig, "meta": {"seconds": 1}}
    return body | {"content_b64": base64.b64encode(data).decode()}


def test_stragglers_and_their_copies_handed_in_at_once_each_win_once(net: Net) -> None:
    """A provider hands in its stragglers while the copies' holder hands in theirs, in the
    opposite order: both batches lock the same tasks (on PostgreSQL they deadlocked and
    one answered 500). Every task is accepted once, and the rest of each batch counts."""
    buyer = net.client()
    buyer.faucet("100")
    job = buyer.submit_job("echo", {"tasks": 12, "seed": 5}, {}, "1")
    a, b = net.provider("a", "eu-west"), net.provider("b", "us-east")
    for _ in range(3):  # the class's p95: 10 s
        task = a.poll(0)
        net.clock.t += TYPICAL_S
        assert run(a, task)["state"] == "accepted"
    net.tick()
    held = a.poll_tasks(0, 9)
    net.clock.t += 3 * TYPICAL_S
    net.tick()
    copies: list[dict] = []
    while got := b.poll_tasks(0, 9):  # a copy comes alone
        copies += got
    assert len(held) == 9 and len(copies) >= 4  # the budget races at least four at once
    start = threading.Barrier(2, timeout=30)
    answers: dict[str, list] = {}

    def hand_in(prov: Client, tasks: list[dict]) -> None:
        items = [_item(prov, t) for t in tasks]
        start.wait()
        answers[prov.address] = prov._send("POST", "/tasks/results", json={"results": items})[
            "results"
        ]

    threads = [
        threading.Thread(target=hand_in, args=(a, held)),
        threading.Thread(target=hand_in, args=(b, copies[::-1])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(answers) == {a.address, b.address}, "a batch failed"
    won: dict[str, list[str]] = {}
    for who, batch in answers.items():
        for ans in batch:
            if ans.get("state") == "accepted":
                won.setdefault(ans["task_id"], []).append(who)
            else:
                assert ans["error"]["code"] == "race_lost", ans
    raced = {c["id"] for c in copies}
    assert set(won) == {t["id"] for t in held} and all(len(w) == 1 for w in won.values())
    assert {won[t][0] for t in set(won) - raced} == {a.address}
    done = finish(net, buyer, job)
    assert buyer.wallet()["available"] == "88"  # twelve tasks paid once each
    assert {t["state"] for t in done["tasks"]} == {"accepted"}
