"""The trust layer through the API on SQLite and PostgreSQL: audits, referees, slashing,
stake, bans and hardware proofs, with the real SDK in-process."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from PIL import Image

from gpudepin.client import Client
from gpudepin.coordinator import loops, verification
from gpudepin.coordinator.app import create_app
from gpudepin.core.errors import Forbidden, InsufficientFunds
from gpudepin.settings import CoordinatorSettings
from gpudepin.workloads.images import write_box
from gpudepin.workloads.scenes import demo_scene_path

pytestmark = pytest.mark.blender  # the render job's scene is validated with Blender


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


class Net:
    def __init__(self, app: TestClient, rt: object, clock: Clock) -> None:
        self.app = app
        self.rt = rt
        self.clock = clock

    @property
    def t(self) -> float:
        return self.clock.t

    def client(self) -> Client:
        http = TestClient(self.app.app, base_url="http://testserver/v1")
        return Client("http://testserver", Account.create(), http=http)

    def provider(self, op: str, gpu_class: str = "cpu", stake: str | None = None) -> Client:
        c = self.client()
        if stake:
            c.faucet(stake)
            c.stake(stake)
        c.register_provider(op, f"region-{op}", op, {"gpu_class": gpu_class}, "t")
        return c

    def tick(self) -> None:
        loops.tick(self.rt)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Net]:
    db_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    clock = Clock()
    settings = CoordinatorSettings(home=tmp_path, db_url=db_url, referee_local=False)
    app = create_app(settings, run_loops=False, clock=clock)
    with TestClient(app) as tc:
        yield Net(tc, app.state.rt, clock)


def truth(tmp: Path, spec: dict, seed: int = 0) -> Path:
    """The 'true' frame of this test (stands in for a Blender render)."""
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 255, (spec["height"], spec["width"], 3), dtype=np.uint8)
    path = tmp / f"frame-{seed}.png"
    Image.fromarray(px).save(path)
    return path


def tile_of(frame: Path, box: list[int], out: Path) -> Path:
    left, top, right, bottom = box
    Image.open(frame).crop((left, top, right, bottom)).save(out)
    write_box(out, (left, top, right, bottom))
    return out


def do_check(prov: Client, tmp: Path, seed: int) -> dict:
    """An auditor runs the check it polled: the tile of the (seed) frame."""
    task = prov.poll(0)
    assert task is not None and task.get("check"), task
    prov.download_input(task["id"], "scene", tmp / f"{task['id']}.blend")
    frame = truth(tmp, task["job_spec"], seed)
    tile = tile_of(frame, task["task_spec"]["tile"], tmp / f"{task['id']}-tile.png")
    return prov.submit_result(task["id"], tile, {})


def test_a_wrong_frame_is_audited_refereed_slashed_and_redone(net: Net, tmp_path: Path) -> None:
    buyer = net.client()
    buyer.faucet("10")
    job = buyer.submit_job("render", {"frames": "1"}, {"scene": demo_scene_path()}, "1")
    cheat = net.provider("op-a", stake="5")
    honest = [net.provider("op-b"), net.provider("op-c")]
    task = cheat.poll(0)
    wrong = truth(tmp_path, task["job_spec"], seed=1)
    assert cheat.submit_result(task["id"], wrong, {})["state"] == "accepted"
    assert cheat.wallet()["held"] == "0.95"
    net.tick()  # a newcomer is audited on every task
    assert buyer.job(job["id"])["state"] == "running", "merged before the audit"
    # whichever honest provider was chosen gets the check first; the other then referees
    done = []
    for p in honest:
        try:
            done.append((p, do_check(p, tmp_path, seed=0)))
        except AssertionError:
            continue
        break
    assert done and done[0][1]["state"] == "submitted"
    net.tick()  # tile vs frame disagree: a referee is needed
    referee = next(p for p in honest if p is not done[0][0])
    assert do_check(referee, tmp_path, seed=0)["state"] == "submitted"
    net.tick()
    view = buyer.job(job["id"])
    assert view["tasks"][0]["state"] == "pending", "the wrong frame must be redone"
    case = buyer.job_verification(job["id"])["cases"][0]
    assert case["state"] == "rejected"
    assert case["evidence"]["faulty"] == [cheat.address]
    assert len(case["evidence"]["output_hashes"]) == 3 and case["rerun"].startswith("tile")
    rep = cheat.reputation()
    assert rep["faults"] == 1 and rep["staked"] == "4.5" and cheat.wallet()["held"] == "0"
    assert buyer.wallet()["escrow"] == "1"  # the whole price is back for the redo
    assert buyer.wallet()["available"] == "9.25"  # plus half of the 0.5 slash
    for p in honest:
        assert p.reputation()["faults"] == 0
    # an honest provider redoes it and is paid; the books balance throughout
    redo = honest[0].poll(0)
    assert redo is not None and redo["id"] == task["id"]
    right = truth(tmp_path, redo["job_spec"], seed=0)
    assert honest[0].submit_result(redo["id"], right, {})["state"] == "accepted"
    assert buyer.ledger_summary()["balanced"]


def test_repeated_faults_ban_the_address_from_polling_beating_and_registering(net: Net) -> None:
    bad = net.provider("op-bad")
    rt = net.rt
    with rt.engine.begin() as conn:  # type: ignore[attr-defined]
        params = verification.params_of(rt.settings)  # type: ignore[attr-defined]
        for _ in range(params.ban_after_faults):
            verification._fault(conn, params, bad.address, None, None, "test", net.t)
    with pytest.raises(Forbidden, match="banned"):
        bad.poll(0)
    with pytest.raises(Forbidden, match="banned"):
        bad.heartbeat([])
    with pytest.raises(Forbidden, match="banned"):
        bad.register_provider("again", "r", "op-bad", {"gpu_class": "cpu"}, "t")
    assert bad.reputation()["banned"] and bad.reputation()["reputation"] == 0


def test_stake_unbonds_after_the_delay_and_bids_need_stake(net: Net) -> None:
    prov = net.provider("op-s", stake="50")
    assert prov.stake_info()["staked"] == "50"
    with pytest.raises(InsufficientFunds):
        prov.unstake("51")
    out = prov.unstake("20")
    assert (out["staked"], out["unbonding"]) == ("30", "20")
    rt = net.rt
    with rt.engine.connect() as conn:  # type: ignore[attr-defined]
        verification.check_bid_stake(conn, prov.address, 10**18)  # 1 token: no stake needed
        with pytest.raises(Forbidden, match="needs a stake"):
            verification.check_bid_stake(conn, prov.address, 10 * 10**18)
    net.tick()
    assert prov.stake_info()["unbonding"] == "20"  # still slashable
    net.clock.t += rt.settings.unbonding_s  # type: ignore[attr-defined]
    net.tick()
    assert prov.stake_info()["unbonding"] == "0"
    assert prov.wallet()["available"] == "20"


def test_a_fabricated_hardware_proof_is_a_fault_and_the_claim_is_dropped(net: Net) -> None:
    fake = net.provider("op-h", gpu_class="h100-80g", stake="10")
    task = fake.poll(0)
    assert task is not None and task["kind"] == "hwproof"
    rows = fake.hwproof_commit(task["id"], hashlib.sha256(b"nothing").hexdigest())
    n = task["task_spec"]["n"]
    verdict = fake.hwproof_answer(
        task["id"], [{"row": r, "values": [0.0] * n, "path": []} for r in rows]
    )
    assert verdict["outcome"] == "fault"
    rep = fake.reputation()
    assert rep["faults"] == 1 and rep["gpu_class"] == "cpu" and not rep["hardware_proven"]
    assert rep["staked"] == "9"  # 10 % slashed, all burned (no buyer was harmed)


def test_cpu_providers_stand_without_a_challenge(net: Net) -> None:
    prov = net.provider("op-c")
    assert prov.poll(0) is None
    rep = prov.reputation()
    assert rep["hardware_proven"] and rep["gpu_class"] == "cpu"


def audited_by_the_only_checker(net: Net, tmp_path: Path) -> tuple[Client, dict, Client, Client]:
    """A one-frame job done right by a newcomer, whose audit went to the one provider
    that may audit it: the buyer, the job, the worker and that checker."""
    buyer = net.client()
    buyer.faucet("10")
    job = buyer.submit_job("render", {"frames": "1"}, {"scene": demo_scene_path()}, "1")
    worker, checker = net.provider("op-a"), net.provider("op-b")
    task = worker.poll(0)
    right = truth(tmp_path, task["job_spec"], seed=0)
    assert worker.submit_result(task["id"], right, {})["state"] == "accepted"
    net.tick()  # a newcomer is audited: the check goes to the checker
    return buyer, job, worker, checker


def test_a_check_missed_while_the_coordinator_was_down_goes_to_its_checker_again(
    net: Net, tmp_path: Path
) -> None:
    buyer, job, worker, checker = audited_by_the_only_checker(net, tmp_path)
    # the checker cannot reach the coordinator until the check's deadline has passed
    net.clock.t += 3 * net.rt.settings.assignment_ttl_s + 1  # type: ignore[attr-defined]
    worker.heartbeat()
    checker.heartbeat()
    net.tick()  # the check expires unstarted: withdrawn, and the case drawn again
    checks = buyer.job_verification(job["id"])["cases"][0]["checks"]
    assert [c["state"] for c in checks] == ["withdrawn", "assigned"]
    assert do_check(checker, tmp_path, seed=0)["state"] == "submitted"
    net.tick()
    net.tick()
    assert buyer.job_verification(job["id"])["cases"][0]["state"] == "accepted"
    assert buyer.job(job["id"])["state"] == "completed"
    assert buyer.ledger_summary()["balanced"]


def test_a_checker_gone_silent_mid_check_stops_holding_the_job_when_nobody_else_can_audit(
    net: Net, tmp_path: Path
) -> None:
    buyer, job, worker, checker = audited_by_the_only_checker(net, tmp_path)
    check = checker.poll(0)
    assert check is not None and check.get("check")
    net.clock.t += net.rt.settings.assignment_ttl_s + 1  # type: ignore[attr-defined]
    worker.heartbeat()  # the checker has gone silent with the check
    net.tick()
    case = buyer.job_verification(job["id"])["cases"][0]
    assert case["state"] == "waiting" and [c["state"] for c in case["checks"]] == ["expired"]
    assert buyer.job(job["id"])["state"] == "running"  # still waiting for an auditor
    net.clock.t += net.rt.settings.audit_wait_s  # type: ignore[attr-defined]
    worker.heartbeat()
    net.tick()
    net.tick()
    assert buyer.job_verification(job["id"])["cases"][0]["state"] == "unchecked"
    assert buyer.job(job["id"])["state"] == "completed"
    assert buyer.ledger_summary()["balanced"]
