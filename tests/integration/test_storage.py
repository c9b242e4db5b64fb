"""Erasure-coded outputs through the API, with agents' shard keepers emulated in-process."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from gpudepin.client import Client
from gpudepin.coordinator import loops
from gpudepin.coordinator.app import create_app
from gpudepin.core.errors import Conflict, Forbidden, Unavailable
from gpudepin.provider.shards import ShardKeeper
from gpudepin.settings import CoordinatorSettings
from gpudepin.workloads.echo import expected

OFFLINE_S = 30.0


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Holder:
    client: Client
    keeper: ShardKeeper

    def beat(self) -> None:
        self.keeper.run(self.client.heartbeat().get("shards") or {})


class Net:
    def __init__(self, tc: TestClient, clock: Clock, root: Path) -> None:
        self.tc = tc
        self.clock = clock
        self.root = root
        self.rt = tc.app.state.rt  # type: ignore[attr-defined]

    def client(self) -> Client:
        http = TestClient(self.tc.app, base_url="http://testserver/v1")
        return Client("http://testserver", Account.create(), http=http)

    def holder(self, name: str, region: str, disk: int = 10**6) -> Holder:
        c = self.client()
        c.register_provider(name, region, f"op-{name}", {"gpu_class": "cpu"}, "t")
        if disk:
            c.offer_storage(disk)
        return Holder(c, ShardKeeper(c, self.root / "agents" / name / "shards"))

    def tick(self) -> None:
        loops.tick(self.rt)


@pytest.fixture
def net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    from gpudepin.coordinator import verification_http

    monkeypatch.setattr(verification_http, "claim_extra", lambda rt, who: None)
    clock = Clock()
    settings = CoordinatorSettings(
        home=tmp_path,
        assignment_ttl_s=20,
        audits=False,
        known_answer_rate=0.0,
        shard_k=2,
        shard_n=3,
        shard_threshold_bytes=1000,
        shard_keep_coordinator_copy=False,
        shard_offline_s=OFFLINE_S,
        shard_read_wait_s=0,  # in-process holders cannot answer while a read waits
    )
    app = create_app(settings, run_loops=False, clock=clock)
    with TestClient(app) as tc:
        yield Net(tc, clock, tmp_path)


def complete_echo(net: Net, worker: Client, size: int) -> tuple[Client, dict, bytes]:
    """A two-task echo job whose merged output is ``2 * size`` bytes, run by ``worker``."""
    buyer = net.client()
    buyer.faucet("10")
    job = buyer.submit_job("echo", {"tasks": 2, "seed": 5, "bytes": size}, {}, "1")
    want = b""
    for _ in range(2):
        task = worker.poll(0)
        body = expected(task["job_spec"], task["task_spec"])
        want += body
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "r").write_bytes(body)
            assert worker.submit_result(task["id"], Path(tmp) / "r", {})["state"] == "accepted"
    net.tick()
    assert buyer.job(job["id"])["state"] == "completed"
    return buyer, job, want


def download(buyer: Client, job: dict, holders: list[Holder], dest: Path) -> bytes:
    """Ask for the output; holders send shards with their next heartbeat; ask again."""
    with pytest.raises(Unavailable, match="shards needed have arrived"):
        buyer.download_outputs(job["id"], dest)
    for h in holders:
        h.beat()
    (path,) = buyer.download_outputs(job["id"], dest)
    return path.read_bytes()


def shards_of(buyer: Client, job: dict) -> dict:
    (out,) = buyer.job_audit(job["id"])["outputs"]
    return out


def test_output_lives_on_shards_survives_a_lost_holder_and_reads_back_identical(
    net: Net, tmp_path: Path
) -> None:
    hs = [
        net.holder(n, r)
        for n, r in (("a", "eu-west"), ("b", "us-east"), ("c", "eu-central"), ("d", "ap-south"))
    ]
    buyer, job, want = complete_echo(net, hs[0].client, 3000)
    stored = shards_of(buyer, job)
    assert (stored["store"], stored["k"], stored["n"]) == ("erasure-shards", 2, 3)
    assert 0 < stored["durability"]["loss_per_year"] < 0.05  # 2-of-3, repaired within ~35 s
    assert {s["state"] for s in stored["shards"]} == {"pending"}
    for h in hs:
        h.beat()
    net.tick()  # every shard held: the coordinator drops its own copy (by setting)
    stored = shards_of(buyer, job)
    assert {s["state"] for s in stored["shards"]} == {"held"}
    assert len({s["operator"] for s in stored["shards"]}) == 3
    assert not net.rt.blobs.exists(stored["sha256"])
    assert download(buyer, job, hs, tmp_path / "first") == want

    by_addr = {h.client.address: h for h in hs}
    holders = [by_addr[s["provider"]] for s in stored["shards"]]
    gone = holders[0]
    others = [h for h in hs if h is not gone]
    spare = next(h for h in hs if h not in holders)
    net.tick()  # the read is over: staged shards are dropped
    net.clock.t += OFFLINE_S + 1
    for h in others:
        h.beat()
    net.tick()  # the holder is gone; its shard must be re-created from k others
    for h in others:
        h.beat()  # they send theirs
    net.tick()  # rebuilt and placed on the spare
    spare.beat()  # which fetches it
    net.tick()
    after = shards_of(buyer, job)
    live = [s for s in after["shards"] if s["state"] == "held"]
    assert sorted(s["index"] for s in live) == [0, 1, 2]
    assert gone.client.address not in {s["provider"] for s in live}
    assert spare.client.address in {s["provider"] for s in live}
    assert download(buyer, job, others, tmp_path / "second") == want
    gone.beat()  # back online: told to drop what is no longer counted as its
    assert not any((gone.keeper.root).rglob("*[0-9]"))


def staged(net: Net, buyer: Client, job: dict) -> int:
    """How many of the output's shards wait in the coordinator's blob store."""
    return sum(net.rt.blobs.exists(s["sha256"]) for s in shards_of(buyer, job)["shards"])


def test_shards_sent_for_a_read_outlast_the_tidy_pass_until_it_is_over(
    net: Net, tmp_path: Path
) -> None:
    hs = [net.holder(n, r) for n, r in (("a", "eu-west"), ("b", "us-east"), ("c", "eu-central"))]
    buyer, job, want = complete_echo(net, hs[0].client, 3000)
    for h in hs:
        h.beat()
    net.tick()  # every shard held, the coordinator's copy dropped
    with pytest.raises(Unavailable):
        buyer.download_outputs(job["id"], tmp_path / "out")  # the holders are asked
    for h in hs:
        h.beat()  # they send their shards
    assert staged(net, buyer, job) == 3
    net.tick()  # a tidy pass before the read looks again: the read still waits for them
    assert staged(net, buyer, job) == 3
    (path,) = buyer.download_outputs(job["id"], tmp_path / "out")
    assert path.read_bytes() == want
    net.tick()  # the read is over: the staged shards go
    assert staged(net, buyer, job) == 0


def test_a_read_given_up_on_stops_holding_the_staged_shards(net: Net, tmp_path: Path) -> None:
    from gpudepin.coordinator.artifacts import READ_REQUEST_TTL_S

    hs = [net.holder(n, r) for n, r in (("a", "eu-west"), ("b", "us-east"), ("c", "eu-central"))]
    buyer, job, _ = complete_echo(net, hs[0].client, 3000)
    for h in hs:
        h.beat()
    net.tick()
    with pytest.raises(Unavailable):
        buyer.download_outputs(job["id"], tmp_path / "out")
    for h in hs:
        h.beat()
    net.clock.t += READ_REQUEST_TTL_S + 1  # nobody came back for them
    for h in hs:
        h.beat()  # still online (the test's holders beat on the fake clock)
    net.tick()
    assert staged(net, buyer, job) == 0
    for h in hs:
        h.beat()
    assert staged(net, buyer, job) == 0  # the requests were closed: nobody sends again


def test_only_the_chosen_holder_moves_a_shard_and_bad_bytes_cost_it_the_shard(net: Net) -> None:
    hs = [net.holder(n, r) for n, r in (("a", "eu-west"), ("b", "us-east"), ("c", "eu-central"))]
    outsider = net.holder("x", "ap-south", disk=0)
    buyer, job, _ = complete_echo(net, hs[0].client, 3000)
    first = shards_of(buyer, job)["shards"][0]
    art, idx = shards_of(buyer, job)["sha256"], first["index"]
    with pytest.raises(Forbidden, match="not yours"):
        outsider.client.fetch_shard(art, idx, net.root / "stolen")
    for h in hs:
        h.beat()
    owner = next(h for h in hs if h.client.address == first["provider"])
    with pytest.raises(Conflict, match="does not match"):
        owner.client.send_shard(art, idx, b"not the shard")
    assert shards_of(buyer, job)["shards"][0]["state"] == "lost"


def test_too_few_disks_keep_the_output_on_the_coordinator_and_say_so(net: Net) -> None:
    worker = net.holder("a", "eu-west")
    buyer, job, want = complete_echo(net, worker.client, 3000)
    assert shards_of(buyer, job)["store"] == "coordinator-blobs"
    events = [e for e in buyer.job(job["id"], events=True)["events"] if "reason" in e]
    assert any("erasure coding needs at least 2" in e["reason"] for e in events)
    (path,) = buyer.download_outputs(job["id"], net.root / "out")
    assert path.read_bytes() == want
