"""Heartbeats name the tasks the agent works on: a claim whose answer never reached the
agent (the coordinator died between commit and reply) must expire and go elsewhere, not
be kept alive by every beat of an agent that does not know it holds it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from gpudepin.client import Client
from gpudepin.coordinator import loops
from gpudepin.coordinator.app import Runtime, create_app
from gpudepin.settings import CoordinatorSettings

TTL = 20.0


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["sqlite", "postgres"])
def app(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TestClient, Clock, Runtime]]:
    db_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    clock = Clock()
    settings = CoordinatorSettings(home=tmp_path, db_url=db_url, assignment_ttl_s=TTL)
    created = create_app(settings, run_loops=False, clock=clock)
    with TestClient(created) as tc:
        yield tc, clock, created.state.rt


def _client(tc: TestClient) -> Client:
    http = TestClient(tc.app, base_url="http://testserver/v1")
    return Client("http://testserver", Account.create(), http=http)


def test_a_claim_the_agent_does_not_name_expires_despite_its_heartbeats(
    app: tuple[TestClient, Clock, Runtime],
) -> None:
    tc, clock, rt = app
    buyer = _client(tc)
    buyer.faucet("1")
    job = buyer.submit_job("echo", {"tasks": 2, "sleep_s": 0.0, "seed": 1}, {}, "0.01")
    prov = _client(tc)
    prov.register_provider("p", "eu-west", "op-p", {"gpu_class": "cpu", "cores": 2}, "t")
    lost = prov.poll(0)  # its answer "never arrived": the agent runs only the next one
    running = prov.poll(0)
    assert lost is not None and running is not None
    for _ in range(3):  # beats past the ttl that name only the task it runs
        clock.t += TTL / 2
        assert prov.heartbeat([running["id"]])["tasks_held"] == 1
        loops.tick(rt)
    states = {t["id"]: t["state"] for t in buyer.job(job["id"])["tasks"]}
    assert states == {lost["id"]: "pending", running["id"]: "assigned"}


def test_a_heartbeat_without_names_keeps_every_assignment(
    app: tuple[TestClient, Clock, Runtime],
) -> None:
    """Agents from before the names are served as they were."""
    tc, clock, rt = app
    buyer = _client(tc)
    buyer.faucet("1")
    job = buyer.submit_job("echo", {"tasks": 2, "sleep_s": 0.0, "seed": 2}, {}, "0.01")
    prov = _client(tc)
    prov.register_provider("p", "eu-west", "op-p", {"gpu_class": "cpu", "cores": 2}, "t")
    assert prov.poll(0) is not None and prov.poll(0) is not None
    for _ in range(3):
        clock.t += TTL / 2
        assert prov.heartbeat()["tasks_held"] == 2
        loops.tick(rt)
    assert {t["state"] for t in buyer.job(job["id"])["tasks"]} == {"assigned"}


def test_checks_and_copies_stay_alive_only_while_the_agent_names_them(
    app: tuple[TestClient, Clock, Runtime],
) -> None:
    """A check (an audit's re-run) and a speculative copy live by the same rule as a task:
    a beat extends those the agent names, and a beat naming nothing extends none."""
    from sqlalchemy import insert, select

    from gpudepin.coordinator import tables_enterprise as te
    from gpudepin.coordinator import tables_verification as tv
    from gpudepin.coordinator import verification

    tc, clock, rt = app
    prov = _client(tc)
    prov.register_provider("p", "eu-west", "op-p", {"gpu_class": "cpu", "cores": 2}, "t")
    who = prov.address.lower()
    now = clock.t
    named_check, silent_check = verification.CHECK_PREFIX + "a", verification.CHECK_PREFIX + "b"
    with rt.engine.begin() as conn:
        conn.execute(
            insert(tv.checks),
            [
                {
                    "id": cid,
                    "case_id": "c1",
                    "role": "auditor",
                    "checker": who,
                    "state": "running",
                    "deadline": now + 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for cid in (named_check, silent_check)
            ],
        )
        conn.execute(
            insert(te.task_copies),
            [
                {
                    "task_id": tid,
                    "job_id": "j1",
                    "provider": who,
                    "state": "running",
                    "speculative": True,
                    "started_at": now,
                    "deadline": now + 1,
                    "created_at": now,
                }
                for tid in ("j1-0", "j1-1")
            ],
        )

    def deadlines() -> dict[str, float]:
        with rt.engine.connect() as conn:
            checks = conn.execute(select(tv.checks.c.id, tv.checks.c.deadline)).all()
            copies = conn.execute(select(te.task_copies.c.task_id, te.task_copies.c.deadline))
            return dict(checks) | dict(copies.all())

    clock.t += 5
    prov.heartbeat([])  # between tasks: nothing extended
    assert set(deadlines().values()) == {now + 1}
    prov.heartbeat([named_check, "j1-0"])
    assert deadlines() == {
        named_check: clock.t + TTL,
        silent_check: now + 1,
        "j1-0": clock.t + TTL,
        "j1-1": now + 1,
    }
