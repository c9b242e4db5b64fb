"""Real processes: a provider that fakes its training run is caught by a segment replay,
loses the bisection its honest auditor's agent answers through its poll, is slashed, and
the task is redone so the buyer gets (and pays for) an honest run."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.identity import load_or_create_key
from gpudepin.workloads import training

pytestmark = pytest.mark.e2e


def wait_for(what: str, check: Callable[[], bool], timeout: float = 240.0) -> None:
    """Poll a condition of the live system until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_fake_training_loses_its_dispute_and_the_run_is_redone(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path, providers=0, port=0, assignment_ttl_s=4.0, hold_window_s=3600)
    net.start()
    cheat_proc = None
    try:
        cheat = Client(net.api_url, load_or_create_key(net.home, "cheat"))
        cheat.faucet("5")
        cheat.stake("5")
        argv = ["--coordinator", net.api_url, "--home", str(net.home), "--key", "cheat"]
        argv += ["--behaviour", "fake-training", "--operator", "op-bad", "--region", "ap-south"]
        with (net.home / "cheat.log").open("ab") as log:
            cheat_proc = subprocess.Popen(
                [sys.executable, "-m", "gpudepin.provider.malicious", *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        buyer = Client(net.api_url, load_or_create_key(net.home, "buyer"))
        buyer.faucet("10")
        wait_for("the cheater", lambda: sum(p["online"] for p in buyer.providers()) == 1)
        spec = tmp_path / "spec.toml"
        spec.write_text(training.demo_spec("mlp", steps=8, checkpoint_interval=4))
        data = training.make_digits_npz(tmp_path / "digits.npz")
        job = buyer.submit_job("train", {}, {"spec": spec, "dataset": data}, "1")
        wait_for("the fake run", lambda: buyer.job(job["id"])["counts"].get("accepted", 0) == 1)
        for i in (1, 2):
            net.start_provider(i)
        wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
        done = buyer.job(job["id"])
        assert done["state"] == "completed", done["reason"]
        assert done["tasks"][0]["provider"] != cheat.address
        report = buyer.job_verification(job["id"])
        # the cheat may also be drawn to audit the honest redo, lie there too and lose again
        disputes = report["disputes"]
        assert disputes and all(d["loser"] == cheat.address for d in disputes)
        for d in disputes:
            assert d["referee"]["by"] == "coordinator" and d["rounds"] <= d["round_bound"]
            for honest in {d["provider"], d["challenger"]} - {cheat.address}:
                assert buyer.reputation(honest)["faults"] == 0
        rep = cheat.reputation()
        assert rep["faults"] == len(disputes)
        assert float(rep["staked"]) == pytest.approx(5 * 0.9 ** len(disputes))  # 10% a fault
        for case in report["cases"]:
            if case["provider"] != cheat.address:
                assert case["state"] in ("accepted", "passed"), case
                assert buyer.reputation(case["provider"])["faults"] == 0
        assert float(buyer.wallet()["available"]) >= 9.0  # one honest run paid, plus a slash share
        assert buyer.ledger_summary()["balanced"]
    finally:
        if cheat_proc is not None:
            cheat_proc.terminate()
            try:
                cheat_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                cheat_proc.kill()
                cheat_proc.wait()
        net.stop()
