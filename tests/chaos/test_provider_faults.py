"""Chaos with real processes: providers killed, frozen, starved of disk, cut off.

Each test runs a workload of exactly checkable ``echo`` tasks (plus two tiny Blender
frames in the mixed one) on a local network with a short assignment ttl, injects its
fault at moments drawn from a seeded generator (the seed is printed), and then checks
the invariants of ``chaos_checks``.
"""

from __future__ import annotations

import resource
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_checks import (
    buyer_of,
    check_invariants,
    echo_job,
    network,
    online,
    read_books,
    seeded_rng,
    sqlite_url,
    wait_all_ended,
    wait_for,
)

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.workloads.scenes import demo_scene_path

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

TTL = 3.0


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNetwork]:
    yield from network(tmp_path, providers=0, ttl=TTL)


def start_providers(net: LocalNetwork, indices: range) -> None:
    for i in indices:
        net.start_provider(i)


def address_of(net: LocalNetwork, name: str) -> str:
    from gpudepin.identity import load_or_create_key

    return str(load_or_create_key(net.home, name).address).lower()


def holder_of_a_task(buyer: object, job_id: str) -> str | None:
    for t in buyer.job(job_id)["tasks"]:  # type: ignore[attr-defined]
        if t["state"] == "assigned":
            return str(t["provider"])
    return None


@pytest.mark.blender
def test_random_providers_killed_during_a_mixed_workload(net: LocalNetwork) -> None:
    rng = seeded_rng("provider kills")
    start_providers(net, range(1, 5))
    buyer = buyer_of(net)
    wait_for("four providers", lambda: online(buyer) == 4)
    jobs = [echo_job(buyer, tasks=5, sleep_s=0.2, seed=s) for s in range(3)]
    render = buyer.submit_job("render", {"frames": "1-2"}, {"scene": demo_scene_path()}, "0.05")
    jobs.append(render["id"])
    alive = [f"provider-{i}" for i in range(1, 5)]
    for n in range(2):  # two kills, each replaced by a fresh agent
        time.sleep(rng.uniform(0.5, 2.5))
        victim = rng.choice(alive)
        print(f"kill -9 {victim}")
        net.kill(victim)
        alive.remove(victim)
        fresh = 5 + n
        net.start_provider(fresh)
        alive.append(f"provider-{fresh}")
    wait_all_ended(buyer, jobs, timeout=100)
    books = check_invariants(buyer, sqlite_url(net), jobs)
    assert all(j.state == "completed" for j in books.jobs), [(j.id, j.reason) for j in books.jobs]


def test_a_frozen_provider_is_slow_but_paid_once(net: LocalNetwork) -> None:
    rng = seeded_rng("freeze")
    start_providers(net, range(1, 4))
    buyer = buyer_of(net)
    wait_for("three providers", lambda: online(buyer) == 3)
    jobs = [echo_job(buyer, tasks=4, sleep_s=0.3, seed=s) for s in range(3)]
    victim = net.procs[f"provider-{rng.randint(1, 3)}"]
    for _ in range(3):  # freezes shorter than the ttl: slow, not gone
        time.sleep(rng.uniform(0.2, 1.0))
        victim.send_signal(signal.SIGSTOP)
        time.sleep(rng.uniform(0.3, TTL / 2))
        victim.send_signal(signal.SIGCONT)
    wait_all_ended(buyer, jobs)
    books = check_invariants(buyer, sqlite_url(net), jobs)
    assert all(j.state == "completed" for j in books.jobs)


def _session_pids(leader: int) -> list[int]:
    """Processes of the agent's session (itself and its fork server)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:  # field 6 of stat: the session id
            pids.append(int(entry.name))
    return pids


def _limit_file_size(leader: int, limit: int) -> None:
    """Make every write of the agent's processes past ``limit`` bytes fail (EFBIG), as on
    a full disk, without root mounts; ``RLIM_INFINITY`` undoes it."""
    for pid in _session_pids(leader):
        # the soft limit only: raising a hard limit again needs CAP_SYS_RESOURCE
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def test_a_provider_with_a_full_disk_hands_its_work_to_others(net: LocalNetwork) -> None:
    rng = seeded_rng("full disk")
    start_providers(net, range(1, 4))
    buyer = buyer_of(net)
    wait_for("three providers", lambda: online(buyer) == 3)
    victim = f"provider-{rng.randint(1, 3)}"
    victim_addr = address_of(net, victim)
    first = echo_job(buyer, tasks=3, sleep_s=0.0, seed=1)
    wait_all_ended(buyer, [first])
    _limit_file_size(net.procs[victim].pid, 0)
    jobs = [first] + [echo_job(buyer, tasks=4, sleep_s=0.1, seed=s) for s in range(2, 4)]
    wait_all_ended(buyer, jobs)
    books = check_invariants(buyer, sqlite_url(net), jobs)
    assert all(j.state == "completed" for j in books.jobs), [(j.id, j.reason) for j in books.jobs]
    late = [t for t in books.tasks if t.job_id != first and t.provider == victim_addr]
    assert not late, "the provider with a full disk completed tasks"
    # it still beats: the disk stops it taking work, not being online
    assert net.procs[victim].poll() is None
    # it noticed by itself: its disk probe was created but could not be written (its
    # log cannot be written either while the limit holds)
    probe = net.home / "agents" / victim / ".disk-probe"
    wait_for("the full disk to be noticed", lambda: probe.exists() and probe.stat().st_size == 0)
    _limit_file_size(net.procs[victim].pid, resource.RLIM_INFINITY)
    wait_for("the disk to be writable again", lambda: "taking work\n" in _log(net, victim))
    again = echo_job(buyer, tasks=8, sleep_s=0.5, seed=9)
    wait_all_ended(buyer, [again])
    books = check_invariants(buyer, sqlite_url(net), [*jobs, again])
    assert any(t.provider == victim_addr for t in books.tasks if t.job_id == again), (
        "the provider did not take work again once its disk had room"
    )


def test_a_provider_cut_off_past_the_ttl_has_its_late_result_refused(
    net: LocalNetwork,
) -> None:
    rng = seeded_rng("partition")
    start_providers(net, range(1, 4))
    buyer = buyer_of(net)
    wait_for("three providers", lambda: online(buyer) == 3)
    job = echo_job(buyer, tasks=6, sleep_s=1.0, seed=rng.randrange(1000))
    # the agent itself stops; its task keeps running and finishes while it is cut off
    name, held_by, lost = _cut_off_a_holder(net, buyer, job)
    time.sleep(rng.uniform(0.0, 1.0))  # how long it stays away past the expiry
    net.procs[name].send_signal(signal.SIGCONT)
    wait_all_ended(buyer, [job])
    books = check_invariants(buyer, sqlite_url(net), [job])
    assert books.jobs[0].state == "completed"
    for task_id in lost:
        # the late result came back and was refused: none of its submissions counted
        # but those of a later assignment (after the expiry the task may come back to
        # the same agent, with cause); check_invariants saw it paid once
        task = next(t for t in books.tasks if t.id == task_id)
        assert task.state == "accepted", task
        by_it = Counter(e.kind for e in books.events if e.task_id == task_id and e.actor == held_by)
        assert by_it["task_submitted"] <= by_it["task_assigned"] - 1, (task_id, by_it)
    wait_for("the late result to be refused", lambda: "result refused" in _log(net, name), 30)


def _cut_off_a_holder(net: LocalNetwork, buyer: Client, job: str) -> tuple[str, str, set[str]]:
    """Freeze an agent that holds a task of ``job`` until that task expires and goes
    elsewhere; returns the agent's name, address and the tasks it lost.

    A holder seen a moment ago may have handed its result in just before the freeze (or
    with a request still in flight): then nothing of it expires, so it is thawed and
    another is tried."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        wait_for("a task to be held", lambda: holder_of_a_task(buyer, job) is not None)
        held_by = holder_of_a_task(buyer, job)
        if held_by is None:
            continue
        name = next(n for n in net.procs if n != "coordinator" and address_of(net, n) == held_by)
        net.procs[name].send_signal(signal.SIGSTOP)
        wait_for("the silent provider's tasks to go", lambda h=held_by: _moved(buyer, job, h))
        lost = _expired_of(net, job, held_by)
        if lost:
            return name, held_by, lost
        net.procs[name].send_signal(signal.SIGCONT)
    raise AssertionError("no frozen holder ever lost its task")


def _expired_of(net: LocalNetwork, job: str, provider: str) -> set[str]:
    """Tasks of ``job`` taken from ``provider`` by expiry (read from the events)."""
    books = read_books(sqlite_url(net), [job])
    return {e.task_id for e in books.events if e.kind == "task_expired" and e.actor == provider}


def _log(net: LocalNetwork, name: str) -> str:
    return (net.home / "logs" / f"{name}.log").read_text()


def _moved(buyer: object, job_id: str, silent: str) -> bool:
    tasks = buyer.job(job_id)["tasks"]  # type: ignore[attr-defined]
    return not any(t["provider"] == silent and t["state"] == "assigned" for t in tasks)
