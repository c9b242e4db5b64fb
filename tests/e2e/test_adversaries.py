"""Real processes: cheating providers are caught by audits, slashed, and the buyer is made
whole, while the honest providers of the same run are never penalised."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.identity import load_or_create_key
from gpudepin.workloads.scenes import demo_scene_path

pytestmark = [pytest.mark.e2e, pytest.mark.blender]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 240.0) -> None:
    """Poll a condition of the live system until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Cheaters:
    """Malicious agents (gpudepin.provider.malicious) run beside a LocalNetwork."""

    def __init__(self, net: LocalNetwork) -> None:
        self.net = net
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, key: str, behaviour: str, operator: str, stake: str = "5") -> Client:
        client = Client(self.net.api_url, load_or_create_key(self.net.home, key))
        client.faucet(stake)
        client.stake(stake)
        log = (self.net.home / f"{key}.log").open("ab")
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gpudepin.provider.malicious",
                    "--coordinator",
                    self.net.api_url,
                    "--home",
                    str(self.net.home),
                    "--key",
                    key,
                    "--behaviour",
                    behaviour,
                    "--operator",
                    operator,
                    "--region",
                    "ap-south",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
        return client

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[LocalNetwork, Cheaters]]:
    network = LocalNetwork(tmp_path, providers=0, port=0, assignment_ttl_s=4.0, hold_window_s=3600)
    network.start()
    cheaters = Cheaters(network)
    try:
        yield network, cheaters
    finally:
        cheaters.stop()
        network.stop()


def _run_job_with(
    network: LocalNetwork, cheaters: Cheaters, behaviours: list[tuple[str, str, str]]
) -> tuple[Client, dict, list[Client]]:
    buyer = Client(network.api_url, load_or_create_key(network.home, "buyer"))
    buyer.faucet("10")
    bad = [cheaters.start(key, b, op) for key, b, op in behaviours]
    wait_for("the cheaters", lambda: sum(p["online"] for p in buyer.providers()) == len(bad))
    job = buyer.submit_job("render", {"frames": "1-2"}, {"scene": demo_scene_path()}, "1")
    # the cheaters answer at once, so they take both frames before anyone honest is up
    wait_for("cheated frames", lambda: buyer.job(job["id"])["counts"].get("accepted", 0) == 2)
    for i in (1, 2):
        network.start_provider(i)
    wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
    return buyer, buyer.job(job["id"]), bad


def _assert_caught_and_made_whole(buyer: Client, done: dict, bad: list[Client]) -> None:
    assert done["state"] == "completed", done["reason"]
    bad_addrs = {c.address for c in bad}
    assert not {t["provider"] for t in done["tasks"]} & bad_addrs, "a cheated frame was kept"
    cases = buyer.job_verification(done["id"])["cases"]
    for case in cases:
        expected = "rejected" if case["provider"] in bad_addrs else "accepted"
        assert case["state"] in (expected, "passed"), case
    assert any(c["state"] == "rejected" for c in cases)
    cheated = {c["provider"] for c in cases}
    for c in (c for c in bad if c.address in cheated):
        rep = c.reputation()
        assert rep["faults"] >= 1 and float(rep["staked"]) < 5
        assert c.wallet()["held"] == "0" and c.wallet()["earned"] == "0"
    honest = {c["provider"] for c in cases} - bad_addrs
    for addr in honest:
        rep = buyer.reputation(addr)
        assert rep["faults"] == 0 and rep["staked"] == "0"
    # the buyer paid exactly two good frames and got a share of each slash on top
    assert float(buyer.wallet()["available"]) >= 8.0
    assert buyer.ledger_summary()["balanced"]


def test_blank_frames_are_caught_slashed_and_redone(
    net: tuple[LocalNetwork, Cheaters],
) -> None:
    buyer, done, bad = _run_job_with(*net, [("cheat", "blank", "op-bad")])
    _assert_caught_and_made_whole(buyer, done, bad)
    evidence = next(
        c["evidence"] for c in buyer.job_verification(done["id"])["cases"] if c["evidence"]
    )
    assert evidence["rerun"].startswith("tile") and len(evidence["output_hashes"]) >= 2


def test_two_colluders_of_one_operator_cannot_vouch_for_each_other(
    net: tuple[LocalNetwork, Cheaters],
) -> None:
    buyer, done, bad = _run_job_with(
        *net, [("colluder-a", "collude", "op-bad"), ("colluder-b", "collude", "op-bad")]
    )
    _assert_caught_and_made_whole(buyer, done, bad)


def test_random_model_outputs_are_caught_by_sampled_audits(
    net: tuple[LocalNetwork, Cheaters], tmp_path: Path
) -> None:
    """The agent process itself cheats on an ONNX job; checkers re-run a few rows each."""
    import numpy as np

    from gpudepin.workloads.inference import make_demo_onnx

    network, cheaters = net
    buyer = Client(network.api_url, load_or_create_key(network.home, "buyer"))
    buyer.faucet("10")
    bad = [cheaters.start("cheat", "random-embeddings", "op-bad")]
    wait_for("the cheater", lambda: sum(p["online"] for p in buyer.providers()) == 1)
    model = make_demo_onnx(tmp_path / "model.onnx")
    np.savez(tmp_path / "x.npz", x=np.ones((40, 16), dtype=np.float32))
    job = buyer.submit_job(
        "infer",
        {"model": "onnx", "batch_size": 20},
        {"model": model, "inputs": tmp_path / "x.npz"},
        "1",
    )
    wait_for("cheated rows", lambda: buyer.job(job["id"])["counts"].get("accepted", 0) == 2)
    for i in (1, 2):
        network.start_provider(i)
    wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
    _assert_caught_and_made_whole(buyer, buyer.job(job["id"]), bad)
    cases = buyer.job_verification(job["id"])["cases"]
    assert all("of 20 rows sampled" in c["rerun"] for c in cases if c["rerun"]), cases
