"""Scale-out on PostgreSQL: two coordinator processes share one database, each serving
half the agents and half the buyers' submissions; one of them is killed mid-run. No task
may be awarded twice, none may be lost, and the books must balance."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_checks import check_invariants, network, seeded_rng, wait_all_ended, wait_for

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.identity import load_or_create_key

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(150)]


@pytest.fixture
def net(tmp_path: Path, pg_url: str) -> Iterator[LocalNetwork]:
    yield from network(tmp_path, providers=0, ttl=3.0, db_url=pg_url)


def test_two_coordinators_on_one_database_award_each_task_once(
    net: LocalNetwork, pg_url: str
) -> None:
    rng = seeded_rng("two coordinators")
    second = net.add_coordinator("coordinator-2")
    urls = [net.api_url, second]
    for i in range(1, 5):  # agents 1, 3 on the first; 2, 4 on the second
        net.start_provider(i, api_url=urls[(i - 1) % 2])
    key = load_or_create_key(net.home, "buyer")
    buyers = [Client(url, key) for url in urls]
    buyers[0].faucet("50")
    wait_for("four providers", lambda: sum(p["online"] for p in buyers[0].providers()) == 4)
    jobs = [
        str(
            buyers[n % 2].submit_job("echo", {"tasks": 6, "sleep_s": 0.1, "seed": n}, {}, "0.01")[
                "id"
            ]
        )
        for n in range(4)
    ]
    sides = [{_address(net, i) for i in (1, 3)}, {_address(net, i) for i in (2, 4)}]
    wait_for("work done through both", lambda: all(_did_work(buyers[0], jobs, s) for s in sides))
    time.sleep(rng.uniform(0.0, 1.0))
    net.kill("coordinator-2")  # its agents go silent; their tasks must not be lost
    wait_all_ended(buyers[0], jobs, timeout=100)
    books = check_invariants(buyers[0], pg_url, jobs)
    assert all(j.state == "completed" for j in books.jobs), [(j.id, j.reason) for j in books.jobs]
    doers = {t.provider for t in books.tasks}
    assert all(side & doers for side in sides), "the agents of one coordinator did no work"


def _address(net: LocalNetwork, i: int) -> str:
    return str(load_or_create_key(net.home, f"provider-{i}").address).lower()


def _did_work(buyer: Client, jobs: list[str], agents: set[str]) -> bool:
    """Whether one of ``agents`` has had a task of ``jobs`` accepted."""
    return any(
        t["state"] == "accepted" and t["provider"] in agents
        for j in jobs
        for t in buyer.job(j)["tasks"]
    )
