"""Chaos with real processes: the coordinator killed with SIGKILL at random moments of a
running workload and started again on the same database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_checks import (
    buyer_of,
    check_invariants,
    echo_job,
    network,
    online,
    seeded_rng,
    sqlite_url,
    wait_all_ended,
    wait_for,
)

from gpudepin.cli.localnet import LocalNetwork

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNetwork]:
    yield from network(tmp_path, providers=3, ttl=3.0)


def test_coordinator_killed_at_random_moments_loses_and_doubles_nothing(
    net: LocalNetwork,
) -> None:
    rng = seeded_rng("coordinator kills")
    buyer = buyer_of(net)
    wait_for("three providers", lambda: online(buyer) == 3)
    jobs = [echo_job(buyer, tasks=5, sleep_s=rng.choice([0.0, 0.2, 0.5]), seed=s) for s in range(3)]
    for _ in range(3):
        time.sleep(rng.uniform(0.0, 2.0))
        print(f"kill -9 the coordinator after {[buyer.job(j)['counts'] for j in jobs]}")
        net.restart_coordinator()
        # a buyer submitting right after a restart must be served like any other
        jobs.append(echo_job(buyer, tasks=2, sleep_s=0.0, seed=len(jobs)))
    wait_all_ended(buyer, jobs, timeout=100)
    books = check_invariants(buyer, sqlite_url(net), jobs)
    assert all(j.state == "completed" for j in books.jobs), [(j.id, j.reason) for j in books.jobs]
