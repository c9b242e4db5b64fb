"""The coordinator's API on SQLite and on PostgreSQL, through the real SDK in-process."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from PIL import Image

from gpudepin.client import Client
from gpudepin.coordinator import loops
from gpudepin.coordinator.app import create_app
from gpudepin.core.errors import (
    Forbidden,
    InsufficientFunds,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
)
from gpudepin.core.money import UNIT
from gpudepin.settings import CoordinatorSettings
from gpudepin.workloads.scenes import demo_scene_path

pytestmark = pytest.mark.blender


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


class Net:
    """An in-process coordinator plus helpers to act as buyers and providers."""

    def __init__(self, app: TestClient, clock: Clock, rt: object) -> None:
        self.app = app
        self.clock = clock
        self.rt = rt

    def client(self) -> Client:
        http = TestClient(self.app.app, base_url="http://testserver/v1")
        return Client("http://testserver", Account.create(), http=http)

    def provider(self, name: str = "p") -> Client:
        c = self.client()
        c.register_provider(name, "eu-west", f"op-{name}", {"gpu_class": "cpu", "cores": 2}, "t")
        return c

    def tick(self) -> None:
        loops.tick(self.rt)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Net]:
    db_url = None
    if request.param == "postgres":
        db_url = request.getfixturevalue("pg_url")
    clock = Clock()
    settings = CoordinatorSettings(
        home=tmp_path, db_url=db_url, max_upload_bytes=2_000_000, assignment_ttl_s=20
    )
    app = create_app(settings, run_loops=False, clock=clock)
    with TestClient(app) as tc:
        yield Net(tc, clock, app.state.rt)


def frame_png(path: Path, width: int, height: int, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def funded_buyer(net: Net, amount: str = "10") -> Client:
    buyer = net.client()
    buyer.faucet(amount)
    return buyer


def submit(buyer: Client, frames: str = "1-2", price: str = "0.5") -> dict:
    return buyer.submit_job("render", {"frames": frames}, {"scene": demo_scene_path()}, price)


def run_task(net: Net, prov: Client, tmp: Path, seed: int = 0) -> dict:
    task = prov.poll(0)
    assert task is not None
    scene = prov.download_input(task["id"], "scene", tmp / f"in-{task['id']}.blend")
    assert scene.read_bytes() == demo_scene_path().read_bytes()
    spec = task["job_spec"]
    png = frame_png(tmp / f"{task['id']}.png", spec["width"], spec["height"], seed)
    return prov.submit_result(task["id"], png, {"seconds": 0.1})


def test_render_job_is_paid_per_accepted_frame_and_completes(net: Net, tmp_path: Path) -> None:
    buyer = funded_buyer(net)
    job = submit(buyer)
    assert job["state"] == "funded" and len(job["tasks"]) == 2
    assert buyer.wallet()["escrow"] == "1"
    prov = net.provider()
    assert run_task(net, prov, tmp_path, 1)["state"] == "accepted"
    assert run_task(net, prov, tmp_path, 2)["state"] == "accepted"
    assert prov.poll(0) is None
    net.tick()
    assert buyer.job(job["id"])["state"] == "running"  # waiting for an auditor
    net.clock.t += net.rt.settings.audit_wait_s  # type: ignore[attr-defined]
    net.tick()  # nobody of another operator can audit: it completes unchecked
    done = buyer.job(job["id"])
    assert done["state"] == "completed"
    names = [o["name"] for o in done["outputs"]]
    assert "frames.zip" in names
    files = buyer.download_outputs(job["id"], tmp_path / "out")
    assert all(f.stat().st_size > 0 for f in files)
    # 2 x 0.5, less the 5% protocol fee, held until the challenge window closes
    assert (prov.wallet()["held"], prov.wallet()["earned"]) == ("0.95", "0")
    net.clock.t += net.rt.settings.hold_window_s  # type: ignore[attr-defined]
    net.tick()
    assert (prov.wallet()["held"], prov.wallet()["earned"]) == ("0", "0.95")
    assert buyer.wallet() == {
        "address": buyer.address,
        "available": "9",
        "escrow": "0",
        "earned": "0",
        "held": "0",
    }
    summary = buyer.ledger_summary()
    assert summary["balanced"] and summary["totals"]["protocol:fees"] == "0.05"


@pytest.mark.parametrize(
    ("make", "exc", "text"),
    [
        (lambda b, p: b.submit_job("render", {}, {"scene": p}, "0.1"), InvalidInput, "blend"),
        (lambda b, p: submit(b, frames="5-2"), InvalidInput, "frames"),
        (lambda b, p: submit(b, frames="1-9999"), InvalidInput, "frames"),
        (lambda b, p: submit(b, price="-1"), InvalidInput, "positive"),
        (lambda b, p: submit(b, frames="1-2", price="1000"), InsufficientFunds, "needs"),
    ],
)
def test_bad_jobs_are_refused_and_leave_nothing_behind(
    net: Net, tmp_path: Path, make: Callable, exc: type, text: str
) -> None:
    buyer = funded_buyer(net)
    not_blend = tmp_path / "scene.blend"
    not_blend.write_text("just text")
    with pytest.raises(exc, match=text):
        make(buyer, not_blend)
    assert buyer.jobs() == []
    assert buyer.wallet()["available"] == "10"


def test_upload_over_the_limit_is_refused(net: Net, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 2_000_001)
    with pytest.raises(PayloadTooLarge):
        net.client().upload(big)


def test_jobs_are_private_and_unknown_ones_are_404(net: Net) -> None:
    buyer = funded_buyer(net)
    job = submit(buyer)
    with pytest.raises(Forbidden):
        net.client().job(job["id"])
    with pytest.raises(Forbidden):
        net.client().cancel(job["id"])
    with pytest.raises(NotFound):
        buyer.job("jnope")
    resp = net.app.get("/v1/jobs/" + job["id"])
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"


def test_expired_session_is_refused_and_the_sdk_signs_in_again(net: Net) -> None:
    buyer = net.client()
    buyer.wallet()
    token = buyer._token
    net.clock.t += 25 * 3600
    resp = net.app.get("/v1/wallet", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401 and "expired" in resp.json()["error"]["message"]
    assert buyer.wallet()["available"] == "0"  # a fresh sign-in
    assert buyer._token != token


def test_a_forged_login_is_refused(net: Net) -> None:
    victim = Account.create().address
    msg = net.app.post("/v1/auth/challenge", json={"address": victim}).json()["message"]
    from gpudepin.identity import sign_text

    sig = sign_text(Account.create(), msg)
    resp = net.app.post("/v1/auth/login", json={"message": msg, "signature": sig})
    assert resp.status_code == 401


def test_silent_provider_loses_the_task_and_its_late_result(net: Net, tmp_path: Path) -> None:
    buyer = funded_buyer(net)
    job = submit(buyer, frames="1")
    slow, fast = net.provider("slow"), net.provider("fast")
    task = slow.poll(0)
    assert task is not None
    net.clock.t += 21  # past the assignment deadline, no heartbeat
    net.tick()
    assert buyer.job(job["id"])["tasks"][0]["state"] == "pending"
    assert run_task(net, fast, tmp_path)["state"] == "accepted"
    png = frame_png(tmp_path / "late.png", task["job_spec"]["width"], task["job_spec"]["height"], 3)
    with pytest.raises(Forbidden, match="not assigned to you"):
        slow.submit_result(task["id"], png, {})
    assert slow.wallet()["held"] == "0"
    assert fast.wallet()["held"] == "0.475"


def test_a_restarted_coordinator_lets_agents_finish_what_they_ran_while_it_was_down(
    net: Net, tmp_path: Path
) -> None:
    buyer = funded_buyer(net)
    job = submit(buyer, frames="1")
    prov = net.provider()
    task = prov.poll(0)
    assert task is not None
    net.clock.t += 21  # down past the assignment's deadline: no heartbeat could reach it
    rt = net.rt
    restarted = create_app(rt.settings, run_loops=False, clock=net.clock)  # type: ignore[attr-defined]
    with TestClient(restarted) as tc:
        again = Net(tc, net.clock, restarted.state.rt)
        again.tick()
        http = TestClient(restarted, base_url="http://testserver/v1")
        same = Client("http://testserver", prov.account, http=http)
        spec = task["job_spec"]
        png = frame_png(tmp_path / "done.png", spec["width"], spec["height"], 0)
        assert same.submit_result(task["id"], png, {})["state"] == "accepted"
        assert same.wallet()["held"] == "0.475"
        # one TTL, not forever: an agent that really is gone still loses the task
        job2 = submit(buyer, frames="2")
        gone = again.provider("gone")
        assert gone.poll(0) is not None
        net.clock.t += 21
        again.tick()
        assert buyer.job(job2["id"])["tasks"][0]["state"] == "pending"
    assert buyer.job(job["id"])["tasks"][0]["state"] == "accepted"


def test_heartbeats_keep_an_assignment_alive(net: Net) -> None:
    buyer = funded_buyer(net)
    submit(buyer, frames="1")
    prov = net.provider()
    assert prov.poll(0) is not None
    for _ in range(3):
        net.clock.t += 15
        assert prov.heartbeat()["tasks_held"] == 1
        net.tick()
    assert buyer.jobs()[0]["state"] == "running"


def test_a_task_that_keeps_failing_fails_the_job_with_a_reason_and_refunds(net: Net) -> None:
    buyer = funded_buyer(net)
    job = buyer.submit_job("render", {"frames": "1"}, {"scene": demo_scene_path()}, "1", 2)
    prov = net.provider()
    for _ in range(2):
        task = prov.poll(0)
        prov.fail_task(task["id"], "blender crashed")
    final = buyer.job(job["id"])
    assert final["state"] == "failed" and "blender crashed" in final["reason"]
    assert buyer.wallet()["available"] == "10"


def test_only_registered_providers_take_work(net: Net) -> None:
    with pytest.raises(Forbidden, match="not a registered provider"):
        net.client().poll(0)


def test_concurrent_agents_never_take_the_same_task(net: Net) -> None:
    # each of them sees the new job funded and starts it, on PostgreSQL as the last
    # write that goes out with its claim's commit: every claim is still whole
    buyer = funded_buyer(net, "100")
    job = submit(buyer, frames="1-6", price="0.1")
    provs = [net.provider(f"p{i}") for i in range(6)]
    taken: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(provs))

    def grab(p: Client) -> None:
        barrier.wait()
        while (task := p.poll(0)) is not None:
            with lock:
                taken.append(task["id"])

    threads = [threading.Thread(target=grab, args=(p,)) for p in provs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(set(taken)) and len(taken) == 6
    view = buyer.job(job["id"])
    assert view["state"] == "running"
    assert {t["state"] for t in view["tasks"]} == {"assigned"}


def test_a_result_that_is_not_the_frame_asked_for_is_rejected_and_redone(
    net: Net, tmp_path: Path
) -> None:
    buyer = funded_buyer(net)
    job = submit(buyer, frames="1")
    prov = net.provider()
    task = prov.poll(0)
    wrong = frame_png(tmp_path / "wrong.png", 7, 7, 1)
    out = prov.submit_result(task["id"], wrong, {})
    assert out["state"] == "rejected" and "expected a PNG" in out["reason"]
    view = buyer.job(job["id"])
    assert view["tasks"][0]["state"] == "pending" and view["state"] == "running"
    assert prov.wallet()["earned"] == "0"


def _echo_file(tmp: Path, task: dict, good: bool = True) -> Path:
    from gpudepin.workloads.echo import expected

    data = expected(task["job_spec"], task["task_spec"]) if good else b"made up\n"
    path = tmp / f"{task['id']}.out"
    path.write_bytes(data)
    return path


def test_a_poll_claims_several_tasks_and_a_batch_counts_each_result_on_its_own(
    net: Net, tmp_path: Path
) -> None:
    buyer = funded_buyer(net)
    job = buyer.submit_job("echo", {"tasks": 4, "seed": 3}, {}, "0.5")
    prov, other = net.provider("a"), net.provider("b")
    mine = prov.poll_tasks(0, 3)
    assert len({t["id"] for t in mine}) == 3
    theirs = other.poll_tasks(0, 3)
    assert [t["id"] for t in theirs] == sorted(
        {t["id"] for t in buyer.job(job["id"])["tasks"]} - {t["id"] for t in mine}
    )
    batch = [
        (mine[0]["id"], _echo_file(tmp_path, mine[0]), {}),
        (mine[1]["id"], _echo_file(tmp_path, mine[1]), {}),
        (mine[2]["id"], _echo_file(tmp_path, mine[2], good=False), {}),
        (theirs[0]["id"], _echo_file(tmp_path, theirs[0]), {}),  # not prov's to submit
    ]
    answers = prov.submit_results(batch)
    assert [a.get("state") for a in answers] == ["accepted", "accepted", "rejected", None]
    assert answers[3]["error"]["code"] == "forbidden"
    # the refused item changed nothing: its owner still submits it, once
    assert other.submit_results([batch[3]])[0]["state"] == "accepted"
    redo = other.poll_tasks(0, 3)  # the rejected one is back in the queue
    assert [t["id"] for t in redo] == [mine[2]["id"]]
    assert (
        other.submit_results([(redo[0]["id"], _echo_file(tmp_path, redo[0]), {})])[0]["state"]
        == "accepted"
    )
    done = {t["id"]: (t["state"], t["provider"]) for t in buyer.job(job["id"])["tasks"]}
    assert done == {
        mine[0]["id"]: ("accepted", prov.address),
        mine[1]["id"]: ("accepted", prov.address),
        mine[2]["id"]: ("accepted", other.address),
        theirs[0]["id"]: ("accepted", other.address),
    }
    # paid per task, whether it came in a batch or alone: 2 x 0.5 less the 5% fee each
    assert prov.wallet()["held"] == other.wallet()["held"] == "0.95"
    events = buyer.job(job["id"], events=True)["events"]
    accepted = sorted(e["task_id"] for e in events if e["kind"] == "task_accepted")
    assert accepted == sorted(done) and all(
        e["paid"] == str(UNIT // 2) for e in events if e["kind"] == "task_accepted"
    )
    assert buyer.ledger_summary()["balanced"]


def test_inline_results_are_kept_in_the_database_and_still_merge_and_download(
    net: Net, tmp_path: Path
) -> None:
    from gpudepin.workloads.echo import expected

    buyer = funded_buyer(net)
    job = buyer.submit_job("echo", {"tasks": 3, "seed": 9}, {}, "0.5")
    prov = net.provider("a")
    tasks = sorted(prov.poll_tasks(0, 3), key=lambda t: t["task_spec"]["index"])
    files = [_echo_file(tmp_path, t) for t in tasks]
    answers = prov.submit_results([(t["id"], f, {}) for t, f in zip(tasks, files, strict=True)])
    assert [a["state"] for a in answers] == ["accepted"] * 3
    blobs = net.rt.blobs  # type: ignore[attr-defined]
    results = [blobs.path(hashlib.sha256(f.read_bytes()).hexdigest()) for f in files]
    assert not any(p.exists() for p in results)  # no file a result
    net.tick()
    net.clock.t += 61  # no one else may audit them: after audit_wait_s the job goes on
    net.tick()  # merged from the database
    (out,) = buyer.download_outputs(job["id"], tmp_path / "out")
    want = [expected(tasks[0]["job_spec"], t["task_spec"]) for t in tasks]
    assert out.read_bytes() == b"".join(want)
    assert not any(p.exists() for p in results)
    # a caller that needs a result as a file gets one, written out when first asked for
    got = buyer._download(f"/jobs/{job['id']}/tasks/{tasks[1]['id']}/result", tmp_path / "r1")
    assert got.read_bytes() == want[1] and results[1].exists()


def test_a_task_taken_away_while_its_batch_is_judged_costs_only_its_own_result(
    net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The set-wise write finds one task no longer the provider's (it expired and went to
    another): the batch is recorded again one result at a time, and the rest counts."""
    from sqlalchemy import update

    from gpudepin.coordinator import api, db

    buyer = funded_buyer(net)
    job = buyer.submit_job("echo", {"tasks": 3, "seed": 4}, {}, "0.5")
    prov, other = net.provider("a"), net.provider("b")
    mine = prov.poll_tasks(0, 3)
    taken = mine[1]["id"]
    judge = api._judge

    def judge_then_lose_one(*args: object) -> object:
        ready = judge(*args)  # type: ignore[arg-type]
        with net.rt.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(
                update(db.tasks).where(db.tasks.c.id == taken).values(provider=other.address)
            )
        return ready

    monkeypatch.setattr(api, "_judge", judge_then_lose_one)
    answers = prov.submit_results([(t["id"], _echo_file(tmp_path, t), {}) for t in mine])
    assert [a.get("state") for a in answers] == ["accepted", None, "accepted"]
    assert answers[1]["error"]["code"] in ("forbidden", "race_lost")
    monkeypatch.undo()
    assert other.submit_results([(taken, _echo_file(tmp_path, mine[1]), {})])[0]["state"] == (
        "accepted"
    )
    assert prov.wallet()["held"] == "0.95" and other.wallet()["held"] == "0.475"
    events = buyer.job(job["id"], events=True)["events"]
    assert sorted(e["task_id"] for e in events if e["kind"] == "task_accepted") == sorted(
        t["id"] for t in mine
    )
    assert buyer.ledger_summary()["balanced"]


def test_a_batch_is_refused_whole_when_malformed(net: Net, tmp_path: Path) -> None:
    buyer = funded_buyer(net)
    buyer.submit_job("echo", {"tasks": 2, "seed": 4}, {}, "0.5")
    prov = net.provider("a")
    task = prov.poll_tasks(0, 1)[0]
    path = _echo_file(tmp_path, task)
    with pytest.raises(InvalidInput, match="twice"):
        prov.submit_results([(task["id"], path, {}), (task["id"], path, {})])
    assert prov.submit_results([(task["id"], path, {})])[0]["state"] == "accepted"
