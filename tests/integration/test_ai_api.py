"""AI workloads through the coordinator's API in-process, with the real SDK: batch
inference equal to a direct ONNX Runtime run, training resumed from the last uploaded
checkpoint, and the hosted-endpoint gateway relaying requests to a serving agent."""

from __future__ import annotations

import json
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from gpudepin.client import Client
from gpudepin.coordinator import loops
from gpudepin.coordinator.app import create_app
from gpudepin.core.errors import Forbidden, InvalidInput, Unavailable
from gpudepin.settings import CoordinatorSettings
from gpudepin.workloads import training
from gpudepin.workloads.base import RunContext
from gpudepin.workloads.inference import make_demo_onnx, onnx_session, run_onnx
from gpudepin.workloads.runner import outcome
from gpudepin.workloads.serving import parse_serve


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

    def buyer(self) -> Client:
        c = self.client()
        c.faucet("100")
        return c

    def provider(self, name: str) -> Client:
        c = self.client()
        c.register_provider(name, "eu-west", f"op-{name}", {"gpu_class": "cpu", "cores": 2}, "t")
        return c

    def tick(self) -> None:
        loops.tick(self.rt)


def make_net(tmp_path: Path, db_url: str | None = None, **extra: Any) -> Iterator[Net]:
    clock = Clock()
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = CoordinatorSettings(
        home=tmp_path,
        db_url=db_url,
        assignment_ttl_s=20,
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
    yield from make_net(tmp_path / "coord", db_url)


@pytest.fixture
def sqlite_net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    from gpudepin.coordinator import verification_http

    monkeypatch.setattr(verification_http, "claim_extra", lambda rt, who: None)
    yield from make_net(tmp_path / "coord")


def run_claimed(prov: Client, task: dict[str, Any], tmp: Path, extra: list[str] = ()) -> Path:
    """Run a claimed task as an agent does: fetch inputs, run the runner, return the result."""
    work = tmp / task["id"].replace("/", "_") / str(len(list(tmp.glob("*"))))
    work.mkdir(parents=True)
    (work / "job.json").write_text(json.dumps(task["job_spec"]))
    (work / "task.json").write_text(json.dumps(task["task_spec"]))
    argv = ["--kind", task["kind"], "--spec", str(work / "job.json")]
    argv += ["--task", str(work / "task.json"), "--workdir", str(work / "out"), *extra]
    for name, sha in task["inputs"].items():
        argv += ["--input", f"{name}={prov.download_input(task['id'], name, tmp / 'in' / sha)}"]
    line = outcome(argv)
    assert "result" in line, line
    return Path(line["result"])


def test_batch_inference_through_the_api_equals_a_direct_onnx_run(net: Net, tmp_path: Path) -> None:
    model = make_demo_onnx(tmp_path / "m.onnx")
    x = np.random.default_rng(5).normal(size=(10, 16)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    buyer = net.buyer()
    job = buyer.submit_job(
        "infer",
        {"model": "onnx", "batch_size": 4},
        {"model": model, "inputs": tmp_path / "x.npz"},
        "0.1",
    )
    assert [t["label"] for t in job["tasks"]] == ["rows 0-3", "rows 4-7", "rows 8-9"]
    a, b = net.provider("a"), net.provider("b")
    for prov in (b, a, b):  # out of order on purpose: the merge restores input order
        task = prov.poll(0)
        assert task is not None
        assert prov.submit_result(task["id"], run_claimed(prov, task, tmp_path), {})["state"] == (
            "accepted"
        )
    net.tick()
    done = buyer.job(job["id"])
    assert done["state"] == "completed", done["reason"]
    (out,) = buyer.download_outputs(job["id"], tmp_path / "out")
    direct = run_onnx(onnx_session(model), {"x": x})["y"]
    with np.load(out) as got:
        assert np.array_equal(got["y"], direct)  # exactly: same build, same machine


@pytest.mark.parametrize(
    ("kind", "params", "files", "field"),
    [
        ("infer", {"model": "gpt-17"}, {"texts": "texts.txt"}, "model"),
        ("infer", {"model": "onnx"}, {"model": "broken.onnx", "inputs": "x.npz"}, "model"),
        ("infer", {"model": "onnx"}, {"model": "m.onnx", "inputs": "x64.npz"}, "inputs"),
        ("infer", {"model": "onnx", "batch_size": 0}, {"model": "m.onnx", "inputs": "x.npz"},
         "batch_size"),
        ("train", {}, {"spec": "neg_lr.toml", "dataset": "digits.npz"}, "optimizer.lr"),
        ("train", {}, {"spec": "big_batch.toml", "dataset": "digits.npz"}, "batch_size"),
        ("train", {}, {"spec": "zero_steps.toml", "dataset": "digits.npz"}, "steps"),
    ],
)  # fmt: skip
def test_bad_ai_jobs_are_refused_at_submission_naming_the_field(
    sqlite_net: Net, tmp_path: Path, kind: str, params: dict, files: dict[str, str], field: str
) -> None:
    make_demo_onnx(tmp_path / "m.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07not a protobuf at all")
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 16), np.float32))
    np.savez(tmp_path / "x64.npz", x=np.zeros((3, 16), np.float64))
    (tmp_path / "texts.txt").write_text("one\ntwo\n")
    training.make_digits_npz(tmp_path / "digits.npz")
    good = training.demo_spec("mlp", steps=20, checkpoint_interval=10)
    (tmp_path / "neg_lr.toml").write_text(good.replace("lr = 0.003", "lr = -0.1"))
    (tmp_path / "big_batch.toml").write_text(good.replace("batch_size = 32", "batch_size = 5000"))
    (tmp_path / "zero_steps.toml").write_text(good.replace("steps = 20", "steps = 0"))
    buyer = sqlite_net.buyer()
    with pytest.raises(InvalidInput) as err:
        buyer.submit_job(kind, params, {k: tmp_path / v for k, v in files.items()}, "0.1")
    assert err.value.message.startswith(f"{field}:"), err.value.message
    assert buyer.wallet()["escrow"] == "0"


def test_training_resumes_from_the_last_uploaded_checkpoint_and_keeps_its_commitments(
    net: Net, tmp_path: Path
) -> None:
    (tmp_path / "spec.toml").write_text(training.demo_spec("mlp", steps=40, checkpoint_interval=10))
    data = training.make_digits_npz(tmp_path / "digits.npz")
    buyer = net.buyer()
    job = buyer.submit_job("train", {}, {"spec": tmp_path / "spec.toml", "dataset": data}, "1")
    spec = job["spec"]
    a = net.provider("a")
    task = a.poll(0)
    assert task is not None and "resume_from" not in task["task_spec"]
    # a runs the first 20 steps and uploads its checkpoint, then dies
    partial = {**task, "task_spec": {**task["task_spec"], "end_step": 20}}
    run_claimed(a, partial, tmp_path)
    train_dir = next(tmp_path.rglob("train/commitments.jsonl")).parent
    journal = [
        json.loads(line) for line in (train_dir / "commitments.jsonl").read_text().splitlines()
    ]
    ckpt = train_dir / "checkpoints" / training.checkpoint_name(20)
    assert a.task_progress(task["id"], 20, ckpt, journal)["step"] == 20
    assert buyer.job_progress(job["id"])["tasks"][0]["step"] == 20
    with pytest.raises(Forbidden):  # only the provider holding it reports progress
        net.provider("x").task_progress(task["id"], 20, ckpt, journal)
    net.clock.t += 21  # a's heartbeats stopped: the assignment expires
    net.tick()
    b = net.provider("b")
    resumed = b.poll(0)
    assert resumed is not None and resumed["id"] == task["id"]
    assert resumed["task_spec"]["resume_from"] == 20
    assert resumed["task_spec"]["prior_commitments"] == journal
    result = run_claimed(b, resumed, tmp_path)
    assert b.submit_result(resumed["id"], result, {})["state"] == "accepted"
    net.tick()
    assert buyer.job(job["id"])["state"] == "completed"
    files = {p.name: p for p in buyer.download_outputs(job["id"], tmp_path / "out")}
    with zipfile.ZipFile(files["training.zip"]) as packed:
        assert json.loads(packed.read("losses.json"))["start_step"] == 20  # not from step 0
    # the same spec run straight through on this machine commits the same states
    whole = training.WORKLOAD.run(
        spec, {"start_step": 0, "end_step": 40}, {"dataset": data}, RunContext(tmp_path / "w")
    )
    expected = training.read_result(whole)["commitments"]
    assert json.loads(files["commitments.json"].read_text()) == expected
    assert [c["step"] for c in expected] == [0, 10, 20, 30, 40]


# ---- the gateway ----------------------------------------------------------------------


@pytest.fixture
def market_net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    from gpudepin.coordinator import verification_http

    monkeypatch.setattr(verification_http, "claim_extra", lambda rt, who: None)
    # the agent is taken for gone after 2 s of silence: 0.5 s failed a loaded CI machine
    yield from make_net(tmp_path / "coord", market=True, gateway_stale_s=2.0)


class FakeAgent:
    """Answers relayed requests as a serving agent would (a doubling 'model')."""

    def __init__(self, client: Client, lease_id: str) -> None:
        self.client = client
        self.lease_id = lease_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            for r in self.client.lease_requests(self.lease_id, 0.2)["requests"]:
                if r["body"].get("fail"):
                    error = {"code": "invalid_input", "message": "input: bad", "hint": "h"}
                    self.client.lease_respond(self.lease_id, r["id"], error=error)
                else:
                    out = {"doubled": [2 * v for v in r["body"]["values"]], "op": r["op"]}
                    self.client.lease_respond(self.lease_id, r["id"], out, compute_ms=0.1)


def wait_ready(buyer: Client, lease_id: str) -> None:
    """Until the serving agent's first poll reaches the gateway (bounded)."""
    deadline = time.monotonic() + 10
    while not buyer.lease_endpoint(lease_id)["ready"]:
        assert time.monotonic() < deadline, "the endpoint never became ready"


def serving_lease(net: Net, workload: str = "serve:embeddings") -> tuple[Client, Client, str]:
    prov = net.provider("p")
    prov.post_ask("lease", 10**13, 1, net.clock() + 600)
    buyer = net.buyer()
    lease = buyer.create_lease("cpu", 600, "1", workload=workload)
    assert lease["lease"]["provider"] == prov.address
    return buyer, prov, lease["id"]


def test_gateway_relays_requests_to_the_serving_agent_and_reports_latency(market_net: Net) -> None:
    buyer, prov, lease_id = serving_lease(market_net)
    with pytest.raises(Unavailable, match="pending"):  # nothing serves it yet
        buyer.lease_invoke(lease_id, {"values": [1]})
    prov.start_lease(lease_id)
    with pytest.raises(Unavailable, match="not ready"):  # no agent polls yet
        buyer.lease_invoke(lease_id, {"values": [1]})
    agent = FakeAgent(prov, lease_id)
    try:
        wait_ready(buyer, lease_id)
        for i in range(20):
            assert buyer.lease_invoke(lease_id, {"values": [i, 1]}) == {
                "doubled": [2 * i, 2],
                "op": "invoke",
            }
        with pytest.raises(InvalidInput, match="input: bad"):  # the model's refusal, as a 400
            buyer.lease_invoke(lease_id, {"fail": True})
        stats = buyer.lease_endpoint(lease_id)
        assert stats["ready"] and stats["requests"] == 21 and stats["errors"] == 1
        lat = stats["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
        with pytest.raises(Forbidden):  # another buyer cannot use the endpoint
            market_net.buyer().lease_invoke(lease_id, {"values": [1]})
    finally:
        agent.stop.set()
        agent.thread.join(5)
    # the agent is gone: requests fail at once with a clear 503, not a hang
    with pytest.raises(Unavailable, match="not answering"):
        buyer.lease_invoke(lease_id, {"values": [1]})
    market_net.tick()  # the figures outlive the process's memory
    from gpudepin.coordinator import ai

    with market_net.rt.engine.connect() as conn:
        assert ai.endpoint_stats(conn, lease_id).requests == 22


def test_a_request_in_flight_fails_with_503_when_the_provider_dies(market_net: Net) -> None:
    buyer, prov, lease_id = serving_lease(market_net)
    prov.start_lease(lease_id)
    taken = threading.Event()

    def dies_holding_it() -> None:  # takes the request, then never answers
        while not prov.lease_requests(lease_id, 0.2)["requests"]:
            pass
        taken.set()

    thread = threading.Thread(target=dies_holding_it, daemon=True)
    thread.start()
    wait_ready(buyer, lease_id)
    with pytest.raises(Unavailable, match="not answering"):
        buyer.lease_invoke(lease_id, {"values": [1]})
    assert taken.is_set()
    thread.join(5)


def test_a_lease_that_serves_nothing_has_no_endpoint(market_net: Net) -> None:
    buyer, prov, lease_id = serving_lease(market_net, workload="")
    prov.start_lease(lease_id)
    with pytest.raises(InvalidInput, match="serves no model"):
        buyer.lease_invoke(lease_id, {"input": "hello"})
    with pytest.raises(InvalidInput, match=r"^model: unknown catalog model"):
        buyer.create_lease("cpu", 600, "1", workload="serve:embeddings:gpt-17")
    with pytest.raises(InvalidInput, match=r"^workload: no uploaded model"):
        buyer.create_lease("cpu", 600, "1", workload="serve:onnx:" + "ab" * 32)
    assert parse_serve("serve:embeddings") == {"kind": "embeddings", "model": "all-minilm-l6-v2"}
