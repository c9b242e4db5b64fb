"""Real processes on a real chain: deposit, render, settle an epoch, claim, burn."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gpudepin.chain.anvil import find_anvil
from gpudepin.cli.localnet import LocalNetwork
from gpudepin.cli.main import app
from gpudepin.client import Client
from gpudepin.core.money import UNIT
from gpudepin.identity import load_or_create_key
from gpudepin.workloads.scenes import demo_scene_path

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.blender,
    pytest.mark.chain,
    pytest.mark.skipif(find_anvil() is None, reason="Anvil is not installed"),
]

PRICE = "0.5"  # the most the buyer pays per frame; two frames
PRICE_UNITS = UNIT // 2
PAY_KINDS = ("pay", "pay_held", "audit_pay")  # how work is paid into a provider's books


def wait_for(what: str, check: Callable[[], bool], timeout: float = 150.0) -> None:
    """Poll a condition of the live system until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork(
        tmp_path,
        providers=2,
        port=0,
        assignment_ttl_s=4.0,
        hold_window_s=1.0,
        chain=True,
        epoch_interval_s=2.0,
    )
    net.start()
    try:
        yield net
    finally:
        net.stop()


def cli(net: LocalNetwork, *args: str, key: str = "buyer") -> Any:
    return CliRunner().invoke(app, ["--home", str(net.home), "--key", key, *args])


def ledger(net: LocalNetwork) -> dict[str, int]:
    raw = httpx.get(f"{net.api_url}/v1/ledger/balances").json()
    return {k: int(v) for k, v in raw.items()}


def test_a_deposit_pays_for_frames_and_providers_claim_their_earnings_on_chain(
    network: LocalNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpudepin.chain.client import ChainClient

    buyer = Client(network.api_url, load_or_create_key(network.home, "buyer"))
    status = buyer.chain_status()
    chain = ChainClient(network.chain_rpc, status["addresses"])

    out = cli(network, "wallet", "deposit", "10")
    assert out.exit_code == 0, out.output
    assert buyer.wallet()["available"] == "10"
    supply = chain.total_supply()
    network.restart_chain()  # the coordinator must reconnect to the restarted node

    wait_for("two providers", lambda: sum(p["online"] for p in buyer.providers()) == 2)
    job = buyer.submit_job("render", {"frames": "1-2"}, {"scene": demo_scene_path()}, PRICE)
    wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
    assert buyer.job(job["id"])["state"] == "completed"

    providers = [p["address"] for p in buyer.providers()]

    def settled() -> bool:
        books = ledger(network)
        unsettled = any(books.get(f"{k}:{p}", 0) for p in providers for k in ("earned", "held"))
        last = buyer.chain_status()["last_epoch"]
        return not unsettled and last is not None and last["state"] == "posted"

    wait_for("earnings to settle on chain", settled)
    books = ledger(network)
    owed = {p: books.get(f"claimable:{p}", 0) for p in providers}
    assert owed == {p: earnings_after_fees(network, p) for p in providers}
    burned = books["protocol:burned"]
    # the market sets the price (at most PRICE a frame): every token the buyer spent went
    # to a provider, was burned, or waits in the fees
    spent = 10 * UNIT - books[f"available:{buyer.address}"]
    assert 0 < spent <= 2 * PRICE_UNITS
    assert sum(owed.values()) + burned + books.get("protocol:fees", 0) == spent
    assert chain.total_supply() == supply - burned
    assert chain.vault_state().total_burned == burned

    for i, address in enumerate(providers, start=1):
        key = next(f"provider-{n}" for n in (1, 2) if _address(network, n) == address)
        before = chain.balance_of(address)
        out = cli(network, "provider", "claim", key=key)
        if owed[address] == 0:
            assert out.exit_code == 2 and "nothing" in out.output
            continue
        assert out.exit_code == 0, out.output
        assert chain.balance_of(address) - before == owed[address], i

    # a claim with a proof the contract rejects: one line saying why
    real = Client.chain_proof

    def forged(self: Client, address: str | None = None) -> dict[str, Any]:
        p = real(self, address)
        return {**p, "cumulative": str(int(p["cumulative"]) + UNIT)}

    monkeypatch.setattr(Client, "chain_proof", forged)
    paid = next(a for a, v in owed.items() if v)
    key = next(f"provider-{n}" for n in (1, 2) if _address(network, n) == paid)
    out = cli(network, "provider", "claim", key=key)
    assert out.exit_code == 2
    assert "invalid proof" in out.output and len(out.output.strip().splitlines()) <= 2

    wait_for(
        "claims to reach the books",
        lambda: not any(ledger(network).get(f"claimable:{p}", 0) for p in providers),
    )
    books = ledger(network)
    assert sum(v for k, v in books.items() if k not in ("world", "protocol:burned")) == (
        chain.vault_balance()
    )
    assert sum(books.values()) == 0
    assert buyer.chain_status()["halted"] is None


def earnings_after_fees(net: LocalNetwork, address: str) -> int:
    """What the ledger's journal paid ``address`` for work (tasks, audits), after fees."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{net.home / 'coordinator.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT account, kind, amount FROM ledger_entries WHERE account IN (:e, :h)"),
                {"e": f"earned:{address}", "h": f"held:{address}"},
            )
            return sum(int(r.amount) for r in rows if r.kind in PAY_KINDS)
    finally:
        engine.dispose()


def _address(net: LocalNetwork, n: int) -> str:
    return str(load_or_create_key(net.home, f"provider-{n}").address).lower()
