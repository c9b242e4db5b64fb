"""Verifiable training through the API: a segment replay audit, then a refereed bisection
between provider and auditor answered through their polls (docs/verification.md).

The agents here are real ``Agent`` / ``MaliciousAgent`` objects whose task and dispute
code runs in-process (no agent threads), against an in-process coordinator on SQLite and
PostgreSQL with a hand-driven clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from gpudepin.cli.common import console
from gpudepin.cli.verification import print_verification
from gpudepin.client import Client
from gpudepin.coordinator import disputes, loops
from gpudepin.coordinator.app import create_app
from gpudepin.core import disputes as D
from gpudepin.core.errors import Forbidden
from gpudepin.provider.agent import Agent, AgentConfig
from gpudepin.provider.fake_training import fake_result
from gpudepin.provider.malicious import MaliciousAgent
from gpudepin.settings import CoordinatorSettings
from gpudepin.workloads import training
from gpudepin.workloads.base import RunContext
from gpudepin.workloads.runner import outcome

STEPS, INTERVAL = 8, 4


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


class Net:
    def __init__(self, tc: TestClient, rt: Any, clock: Clock, tmp: Path) -> None:
        self.tc, self.rt, self.clock, self.tmp = tc, rt, clock, tmp
        self.buyer: Client
        self.job_id = ""

    def client(self) -> Client:
        http = TestClient(self.tc.app, base_url="http://testserver/v1")
        return Client("http://testserver", Account.create(), http=http)

    def agent(self, op: str, behaviour: str | None = None, stake: str = "5") -> Agent:
        c = self.client()
        c.faucet(stake)
        c.stake(stake)
        c.register_provider(op, f"region-{op}", op, {"gpu_class": "cpu"}, "t")
        cfg = AgentConfig(name=op, region=f"region-{op}", operator=op)
        hw = {"gpu_class": "cpu", "device": "cpu"}
        work = self.tmp / "agents" / op
        if behaviour is None:
            return Agent(c, cfg, hw, work)
        return MaliciousAgent(c, cfg, hw, work, behaviour=behaviour)

    def tick(self) -> None:
        loops.tick(self.rt)


@pytest.fixture(params=["sqlite", "postgres"])
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Net]:
    db_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    clock = Clock()
    settings = CoordinatorSettings(
        home=tmp_path, db_url=db_url, referee_local=False, known_answer_rate=0.0
    )
    app = create_app(settings, run_loops=False, clock=clock)
    with TestClient(app) as tc:
        yield Net(tc, app.state.rt, clock, tmp_path)


def run(agent: Agent, task: dict[str, Any]) -> dict[str, Any]:
    """What the agent's ``_fetch_and_run`` does, with the runner in this process."""
    inputs = agent._fetch_inputs(task)
    work = agent.workdir / f"run-{task['id'].replace('/', '_')}"
    work.mkdir(parents=True)
    (work / "job.json").write_text(json.dumps(task["job_spec"]))
    (work / "task.json").write_text(json.dumps(task["task_spec"]))
    cmd = ["--kind", task["kind"], "--spec", str(work / "job.json")]
    cmd += ["--task", str(work / "task.json"), "--workdir", str(work / "out")]
    for name, path in inputs.items():
        cmd += ["--input", f"{name}={path}"]
    if isinstance(agent, MaliciousAgent):
        agent._task = task
        line = agent._execute(cmd)
    else:
        line = outcome(cmd)
    assert "result" in line, line
    return agent.client.submit_result(task["id"], Path(line["result"]), {})


def submit_training(net: Net) -> tuple[Client, dict[str, Any]]:
    spec = net.tmp / "spec.toml"
    spec.write_text(training.demo_spec("mlp", steps=STEPS, checkpoint_interval=INTERVAL))
    data = training.make_digits_npz(net.tmp / "digits.npz")
    buyer = net.client()
    buyer.faucet("10")
    net.buyer = buyer
    return buyer, buyer.submit_job("train", {}, {"spec": spec, "dataset": data}, "1")


def audit(net: Net, auditors: list[Agent]) -> Agent:
    """The planned check goes to one of ``auditors``: it replays its segment."""
    net.tick()
    for a in auditors:
        item = a.client.poll(0)
        if item is not None:
            assert item["check"] and "segment" in item["task_spec"], item
            start, end = item["task_spec"]["segment"]
            assert end - start == INTERVAL
            assert ("checkpoint" in item["inputs"]) == (start > 0)
            assert run(a, item)["state"] == "submitted"
            return a
    raise AssertionError("no auditor got the check")


def bisect(net: Net, parties: list[Agent]) -> dict[str, Any]:
    """Both parties answer every query through their polls until the referee's turn."""
    net.tick()  # the duty compares the replay and opens the dispute
    report = net.buyer.job_verification(net.job_id)
    (d,) = report["disputes"]
    assert d["state"] == "bisecting", d
    for _ in range(D.max_rounds(INTERVAL) + 1):
        for agent in parties:
            item = agent.client.poll(0)
            if item is not None:
                assert item["kind"] == "bisect" and item["id"] == d["id"], item
                agent.answer_bisection(item)
        d = parties[0].client.dispute(d["id"])
        if d["state"] != "bisecting":
            break
    assert d["state"] == "referee" and d["rounds"] <= D.max_rounds(INTERVAL), d
    net.tick()  # the coordinator re-executes the one disputed step and rules
    return parties[0].client.dispute(d["id"])


def test_fake_training_is_caught_by_segment_replay_and_bisection(net: Net) -> None:
    buyer, job = submit_training(net)
    net.job_id = job["id"]
    cheat = net.agent("op-a", behaviour="fake-training")
    honest = [net.agent("op-b"), net.agent("op-c")]
    task = cheat.client.poll(0)
    assert run(cheat, task)["state"] == "accepted"
    assert cheat.client.wallet()["held"] == "0.95"
    auditor = audit(net, honest)
    d = bisect(net, [cheat, auditor])
    assert d["state"] == "applied" and d["loser"] == cheat.client.address, d
    assert d["referee"]["by"] == "coordinator"
    lo, hi = d["referee"]["step"]
    assert hi == lo + 1  # the referee ran one step
    # the cheat is slashed, its pay clawed back; the honest auditor is paid, not faulted
    assert cheat.client.reputation(cheat.client.address)["faults"] == 1
    assert cheat.client.stake_info()["staked"] == "4.5"
    assert cheat.client.wallet()["held"] == "0"
    assert auditor.client.reputation(auditor.client.address)["faults"] == 0
    assert auditor.client.stake_info()["staked"] == "5"
    report = buyer.job_verification(job["id"])
    (case,) = report["cases"]
    assert case["state"] == "rejected" and case["evidence"]["verdict"] == "rejected"
    evidence = case["evidence"]["commitments"]["compare"]
    assert all(word in evidence for word in ("round 1: step", "referee", "bound ceil(log2 T)"))
    with console.capture() as shown:  # what `gpudepin jobs show ID --verification` prints
        print_verification(report)
    assert "round 1, step" in shown.get() and "referee (coordinator) re-ran step" in shown.get()
    # the buyer gets its payment back in escrow plus half the slash; the task is redone
    wallet = buyer.wallet()
    assert (wallet["escrow"], wallet["available"]) == ("1", "9.25"), wallet
    redo = [item for a in honest if (item := a.client.poll(0)) is not None]
    assert [item["id"] for item in redo] == [task["id"]]


def test_a_lying_auditor_loses_its_dispute_against_an_honest_provider(net: Net) -> None:
    buyer, job = submit_training(net)
    net.job_id = job["id"]
    provider = net.agent("op-a")
    liar = net.agent("op-b", behaviour="fake-training")
    task = provider.client.poll(0)
    assert run(provider, task)["state"] == "accepted"
    assert audit(net, [liar]) is liar
    d = bisect(net, [provider, liar])
    assert d["state"] == "applied" and d["loser"] == liar.client.address, d
    assert liar.client.reputation(liar.client.address)["faults"] == 1
    assert liar.client.stake_info()["staked"] == "4.5"
    # the honest provider keeps its stake and its (still held) pay, and gains a verified task
    rep = provider.client.reputation(provider.client.address)
    assert rep["faults"] == 0 and rep["verified"] == 1
    assert provider.client.stake_info()["staked"] == "5"
    assert provider.client.wallet()["held"] == "0.95"
    (case,) = buyer.job_verification(job["id"])["cases"]
    assert case["state"] == "accepted"
    net.tick()
    assert buyer.job(job["id"])["state"] == "completed"


def test_a_party_that_stops_answering_forfeits(net: Net) -> None:
    buyer, job = submit_training(net)
    net.job_id = job["id"]
    cheat = net.agent("op-a", behaviour="fake-training")
    auditor = net.agent("op-b")
    task = cheat.client.poll(0)
    run(cheat, task)
    audit(net, [auditor])
    net.tick()
    with net.rt.engine.connect() as conn:
        (d,) = disputes.job_disputes(conn, job["id"])
    item = auditor.client.poll(0)
    auditor.answer_bisection(item)  # the honest auditor answers; the cheat goes silent
    with pytest.raises(Forbidden):  # only the parties answer
        net.client().dispute_answer(d["id"], item["task_spec"]["step"], "0" * 64)
    net.clock.t += disputes.answer_window(net.rt.settings) + 1
    net.tick()
    out = auditor.client.dispute(d["id"])
    assert out["loser"] == cheat.client.address and out["reason"] == "missed its deadline"
    assert cheat.client.reputation(cheat.client.address)["faults"] == 1
    (case,) = buyer.job_verification(job["id"])["cases"]
    assert case["state"] == "rejected"


def test_compare_judges_a_segment_replay_against_a_complete_run_only(tmp_path: Path) -> None:
    """What known-answer checks of training rely on: a segment from the run's checkpoint
    matches the complete run; an incomplete 'complete' run matches nothing."""
    spec = training.WORKLOAD.validate(
        training.parse_spec(training.demo_spec("mlp", steps=STEPS, checkpoint_interval=INTERVAL)),
        {"dataset": training.make_digits_npz(tmp_path / "digits.npz")},
    )
    data = {"dataset": tmp_path / "digits.npz"}
    whole = training.WORKLOAD.run(spec, {}, data, RunContext(tmp_path / "whole"))
    ckpt = training.extract_checkpoint(whole, INTERVAL, tmp_path / "ckpt")
    part = training.WORKLOAD.run(
        spec,
        training.segment_task(INTERVAL, STEPS),
        {**data, "checkpoint": ckpt},
        RunContext(tmp_path / "part"),
    )
    assert sorted(training.commitments_of(part)) == [INTERVAL, STEPS]
    assert training.WORKLOAD.compare(spec, whole, part).equal
    assert training.WORKLOAD.compare(spec, part, whole).equal
    short = training.WORKLOAD.run(spec, {"end_step": INTERVAL}, data, RunContext(tmp_path / "s"))
    # a truncated run would pass for a segment from step 0: submission refuses it
    assert training.WORKLOAD.check_result(spec, {}, short) is not None
    assert training.WORKLOAD.check_result(spec, {}, whole) is None
    assert not training.WORKLOAD.compare(spec, short, part).equal
    faked = fake_result(
        spec, training.segment_task(INTERVAL, STEPS), {**data, "checkpoint": ckpt}, tmp_path / "f"
    )
    assert not training.WORKLOAD.compare(spec, whole, faked).equal
