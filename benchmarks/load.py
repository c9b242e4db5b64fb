"""Load: 1,000 emulated providers and four buyers against a real coordinator process.

    python3 benchmarks/load.py [--providers 1000] [--seconds 40] [--db sqlite|postgres|both]
                               [--no-celery] [--no-ray] [--coordinators N] [--home-root DIR]

Each emulated provider is a coroutine with its own Ethereum key and its own connection:
it signs in (SIWE), registers, heartbeats, long-polls for work (``wait=10``, as the
agent) and, for each tiny ``echo`` task it gets, hands in the exact expected bytes,
inline and signed, like a real agent minus the process it would run. Four buyers keep
a backlog of echo jobs queued. The coordinator runs under uvicorn in a subprocess, on
SQLite and on PostgreSQL, with posted prices (no auction) and audits off: this measures
dispatch. Printed: sustained tasks/s (accepted results), p50/p99 API latency per call
and overall, errors (non-2xx answers or failed requests), and the CPU the coordinator,
the clients and the host used.

In the same run the same number of tiny tasks is dispatched with Celery (Redis broker
at 127.0.0.1:6379) and with Ray on this machine, and our throughput is printed as a
ratio to each. Every client runs in this one process, on the same cores as the server.

The coordinator's home (its SQLite database and blob store) is a temporary folder in
``--home-root``, the system's temporary folder by default. Tiny results handed in inline
are kept in the database, not as files of the blob store (until 2026-12-07 each was a
file, and creating one in that day's /tmp cost ~1 ms of CPU, 20-40 us in /var/tmp on the
same disk); the folder's file system still holds SQLite's database and its journal.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _pg import scratch_database
from eth_account import Account
from eth_account.signers.local import LocalAccount

from gpudepin import CLIENT_KEEPALIVE_S
from gpudepin.cli.localnet import free_port, wait_healthy
from gpudepin.identity import result_message, sign_text
from gpudepin.workloads.echo import expected

HERE = Path(__file__).resolve().parent
HEARTBEAT_S = 10.0
LONG_POLL_S = 10.0  # as the real agent: a poll waits up to this long for work
JOB_TASKS = 1000  # one submission keeps a few hundred agents busy
# tasks queued per provider beyond those it runs: the queue never runs dry. The buyer
# counts every task not yet accepted, so a window whose polls bring ``batch`` tasks
# keeps ``batch + 4`` a provider outstanding: with 4 in all and 8 a poll the providers
# held every task, polls waited for the buyer's next job, and the window measured how
# fast one buyer submits (submit_job took 1.5 s on SQLite, 7 s on PostgreSQL)
BACKLOG_PER_PROVIDER = 4
# buyers submitting at once: one buyer's 1,000-task job took 1.8 s to submit on a busy
# SQLite coordinator and 6-7 s on PostgreSQL, so one buyer alone, submitting back to
# back, kept the saturated window's polls waiting (its rate was that window's figure)
BUYERS = 4


@dataclass
class Stats:
    recording: bool = False
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    done: int = 0  # accepted while recording
    accepted: int = 0  # accepted at all
    submitted: int = 0
    empty_polls: int = 0  # long polls that came back without work (their time is the wait)
    task_s: float = 0.0  # how long an emulated provider "runs" each task
    batch: int = 1  # tasks a poll may bring (and results a submission carries)
    why: dict[str, str] = field(default_factory=dict)  # the first error of each kind
    server_cpu_s: float = 0.0  # CPU time the coordinator process used in the window
    client_cpu_s: float = 0.0  # CPU time this process (every emulated party) used in it
    host_cpu: dict[str, float] = field(default_factory=dict)  # the host's CPUs, by use
    races_lost: int = 0  # results refused because a speculative copy delivered first


class Api:
    """One emulated party: its own httpx client, key and session."""

    def __init__(self, http: httpx.AsyncClient, account: LocalAccount, stats: Stats) -> None:
        self.http, self.account, self.stats = http, account, stats
        self.token = ""

    async def call(
        self, name: str, method: str, path: str, keep: bool = True, **kw: object
    ) -> dict | None:
        """One API call; its latency is kept unless ``keep`` is False (long polls: the
        caller keeps those that returned work)."""
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        t0 = time.perf_counter()
        try:
            r = await self.http.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]
            ok = r.is_success
        except httpx.HTTPError as exc:
            ok, r, why = False, None, repr(exc)
        if r is not None and r.status_code == 403 and '"race_lost"' in r.text:
            self.stats.races_lost += self.stats.recording  # a copy won: no error
            return None
        if self.stats.recording and keep:
            self.stats.latency[name].append(time.perf_counter() - t0)
            if not ok:
                self.stats.errors[name] += 1
                self.stats.why.setdefault(name, r.text[:200] if r is not None else why)
        if not ok:
            if not self.stats.recording:
                raise RuntimeError(f"{name} failed: {r.text if r is not None else why}")
            return None
        return r.json()  # type: ignore[no-any-return, union-attr]

    async def login(self) -> None:
        msg = await self.call(
            "challenge", "POST", "/v1/auth/challenge", json={"address": self.account.address}
        )
        assert msg is not None
        out = await self.call(
            "login",
            "POST",
            "/v1/auth/login",
            json={"message": msg["message"], "signature": sign_text(self.account, msg["message"])},
        )
        assert out is not None
        self.token = out["token"]


async def register(api: Api, i: int) -> None:
    hw = {"gpu_class": "cpu", "device": "cpu", "vram_gb": 0}
    body = {"name": f"load-{i}", "region": "eu-west", "operator": f"op-{i}", "hardware": hw}
    await api.call("register", "POST", "/v1/providers/register", json=body)


async def beat(api: Api) -> None:
    """A heartbeat between tasks: it names none (the agent names what it runs)."""
    await api.call("heartbeat", "POST", "/v1/providers/heartbeat", json={"held": []})


async def provider(api: Api, stop: asyncio.Event, rng: random.Random) -> None:
    """What the real agent does, minus the process: heartbeat, long-poll, run, submit.
    With ``batch`` > 1 it prefetches that many tasks a poll and submits their results in
    one call (the API's batch path)."""
    batch = api.stats.batch
    next_beat = time.monotonic() + rng.uniform(0, HEARTBEAT_S)
    while not stop.is_set():
        if time.monotonic() >= next_beat:
            await beat(api)
            next_beat += HEARTBEAT_S
        t0 = time.perf_counter()
        params = {"wait": LONG_POLL_S, "max_tasks": batch}
        out = await api.call("poll", "POST", "/v1/providers/poll", params=params, keep=False)
        tasks = (out or {}).get("tasks") or []
        if not tasks:
            api.stats.empty_polls += api.stats.recording
            continue
        if api.stats.recording:
            api.stats.latency["poll"].append(time.perf_counter() - t0)
        if api.stats.task_s:  # the emulated run of the tasks (a real agent computes here)
            await asyncio.sleep(api.stats.task_s * len(tasks) * rng.uniform(0.5, 1.5))
        items = [_result(api, task) for task in tasks]
        if batch == 1:
            res = await api.call(
                "result", "POST", f"/v1/tasks/{tasks[0]['id']}/result", json=items[0]
            )
            answers = [res] if res is not None else []
        else:
            res = await api.call("results", "POST", "/v1/tasks/results", json={"results": items})
            answers = (res or {}).get("results", [])
        refused = [a for a in answers if a.get("state") != "accepted"]
        lost = [a for a in refused if a.get("error", {}).get("code") == "race_lost"]
        api.stats.races_lost += len(lost) * api.stats.recording
        refused = [a for a in refused if a not in lost]  # not an error: speculation at work
        if refused and api.stats.recording:
            api.stats.errors["result items"] += len(refused)
            api.stats.why.setdefault("result items", str(refused[0])[:200])
        ok = len(answers) - len(refused) - len(lost)
        api.stats.accepted += ok
        api.stats.done += ok * api.stats.recording


def _result(api: Api, task: dict) -> dict:
    data = expected(task["job_spec"], task["task_spec"])
    sha = hashlib.sha256(data).hexdigest()
    return {
        "task_id": task["id"],
        "sha256": sha,
        "signature": sign_text(api.account, result_message(task["id"], sha)),
        "meta": {},
        "content_b64": base64.b64encode(data).decode(),  # as the SDK sends small results
    }


async def buyer(api: Api, stop: asyncio.Event, backlog: int, first_seed: int) -> None:
    """Keep ``backlog`` tasks not yet accepted, in 1,000-task echo jobs; the seeds start
    at ``first_seed`` (each buyer its own: equal seeds would make equal results)."""
    await api.call("faucet", "POST", "/v1/wallet/faucet", json={"amount": "1000000"})
    seed = first_seed
    while not stop.is_set():
        if api.stats.submitted - api.stats.accepted >= backlog:
            await asyncio.sleep(0.05)  # enough queued: look again soon
            continue
        seed += 1
        params = {"tasks": JOB_TASKS, "seed": seed}
        body = {"kind": "echo", "params": params, "inputs": {}, "price_per_task": "0.0001"}
        if await api.call("submit_job", "POST", "/v1/jobs", json=body):
            api.stats.submitted += JOB_TASKS
        else:
            await asyncio.sleep(0.2)  # refused (counted as an error): do not spin


def keys(n: int) -> list[LocalAccount]:
    """Deterministic keys, derived quickly (no key files)."""
    return [Account.from_key(hashlib.sha256(f"load-{i}".encode()).digest()) for i in range(n)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux), 0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_ticks() -> dict[str, float]:
    """The host's CPU time so far by use (Linux ``/proc/stat``), in seconds: ``busy``,
    ``idle`` and ``steal`` (taken by the hypervisor for other guests)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    except OSError:
        return {"busy": 0.0, "idle": 0.0, "steal": 0.0}
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    return {
        "busy": (user + nice + system + irq + softirq) / hz,
        "idle": (idle + iowait) / hz,
        "steal": steal / hz,
    }


async def drive(
    urls: list[str],
    pids: list[int],
    n: int,
    seconds: float,
    warmup: float,
    task_s: float,
    batch: int,
    windows: list[str],
) -> dict[str, Stats]:
    """Sign everyone in, then run the windows with the same 1,000 providers: a steady one
    (each task takes ``task_s`` to run, as real work does: the latency figures) and a
    saturated one (tasks take no time: the most the coordinator dispatches)."""
    every = {"steady": Stats(task_s=task_s), "saturated": Stats(task_s=0.0, batch=batch)}
    phases = [every[w] for w in windows]
    # every party has its own client and keeps its connection between calls, as the agent
    # does (client.agent_http): pools shared by fifty providers scanned their connections
    # on every request (a fifth of this process's CPU), and in the steady window, where
    # a few connections served each pool, the rest expired and a thousand reconnected
    # at once when the saturated window began
    limits = httpx.Limits(
        max_connections=2, max_keepalive_connections=1, keepalive_expiry=CLIENT_KEEPALIVE_S
    )
    async with contextlib.AsyncExitStack() as stack:
        accounts = keys(n + BUYERS)
        apis = [  # with several coordinators, the parties talk to each of them in turn
            Api(
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=urls[i % len(urls)], limits=limits, timeout=LONG_POLL_S + 30
                    )
                ),
                a,
                phases[0],
            )
            for i, a in enumerate(accounts)
        ]
        providers, buyers = apis[:n], apis[n:]
        seeded = 0
        gate = asyncio.Semaphore(50)

        async def sign_in(a: Api) -> None:
            async with gate:
                for attempt in range(3):  # a busy server may drop a connection while set up
                    try:
                        await a.login()
                        if a not in buyers:
                            await register(a, apis.index(a))
                        return
                    except RuntimeError:
                        if attempt == 2:
                            raise

        t0 = time.monotonic()
        await asyncio.gather(*(sign_in(a) for a in apis))
        took = time.monotonic() - t0
        print(f"  {n} providers signed in and registered, {BUYERS} buyers signed in: {took:.1f}s")
        # every agent beats once as it comes online, all at once: the windows then start
        # with each connection open, instead of a thousand connecting under full load
        await asyncio.gather(*(beat(a) for a in providers))
        for stats in phases:
            for a in apis:
                a.stats = stats
            stats.submitted = stats.accepted = 0
            stop = asyncio.Event()
            rng = random.Random(7)
            backlog = n * (stats.batch + BACKLOG_PER_PROVIDER)
            tasks = [
                asyncio.create_task(buyer(b, stop, backlog, 1_000_000 * (j + 1) + seeded))
                for j, b in enumerate(buyers)
            ]
            seeded += 10_000  # the next window's jobs are new ones too
            while stats.submitted == 0:  # the window opens with work queued
                await asyncio.sleep(0.1)
            tasks += [asyncio.create_task(provider(a, stop, rng)) for a in providers]
            await asyncio.sleep(warmup)
            stats.recording = True
            started, cpu0 = time.monotonic(), sum(map(cpu_seconds, pids))
            client0, host0 = time.process_time(), host_ticks()
            await asyncio.sleep(seconds)
            stats.recording = False
            stats.latency["_window"] = [time.monotonic() - started]
            stats.server_cpu_s = sum(map(cpu_seconds, pids)) - cpu0
            stats.client_cpu_s = time.process_time() - client0
            stats.host_cpu = {k: v - host0[k] for k, v in host_ticks().items()}
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for b in buyers:
                await _drain(b)
    return {w: every[w] for w in windows}


async def _drain(buyer_api: Api) -> None:
    """Cancel the jobs still queued, so the next window starts from the same state."""
    jobs = await buyer_api.call("jobs", "GET", "/v1/jobs", keep=False)
    for job in jobs or []:
        if job["state"] in ("funded", "running"):
            try:
                await buyer_api.call("cancel", "POST", f"/v1/jobs/{job['id']}/cancel", keep=False)
            except RuntimeError as exc:  # it completed since the list was read
                if '"conflict"' not in str(exc):
                    raise


def start_coordinator(home: Path, db: str | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port(0)
    args = [sys.executable, "-m", "gpudepin", "--home", str(home), "coordinator"]
    args += ["--port", str(port), "--assignment-ttl", "60", "--no-audits", "--no-market"]
    if db:
        args += ["--db", db]
    log = (home / "coordinator.log").open("ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else 0.0


def report(label: str, stats: Stats) -> float:
    window = stats.latency.pop("_window")[0]
    rate = stats.done / window
    every = [x for xs in stats.latency.values() for x in xs]
    errors = sum(stats.errors.values())
    print(f"  {label}: {rate:.1f} tasks/s sustained over {window:.0f}s ({stats.done} tasks)")
    if stats.server_cpu_s and stats.done:
        print(
            f"  {label}: the coordinator(s) used {stats.server_cpu_s / window:.2f} CPUs, "
            f"{1000 * stats.server_cpu_s / stats.done:.2f} ms of CPU a task; the clients "
            f"{stats.client_cpu_s / window:.2f} CPUs; the host's CPUs busy "
            f"{stats.host_cpu['busy'] / window:.2f}, idle {stats.host_cpu['idle'] / window:.2f}, "
            f"stolen {stats.host_cpu['steal'] / window:.2f}"
        )
    print(
        f"  {label}: API p50 {pct(every, 0.5):.1f} ms, p99 {pct(every, 0.99):.1f} ms over "
        f"{len(every)} calls ({len(every) / window:.0f}/s; polls counted when they brought "
        f"work, {stats.empty_polls} empty long polls not counted); errors {errors}"
    )
    for name, xs in sorted(stats.latency.items()):
        print(
            f"    {name:<10} {len(xs):>7} calls  p50 {pct(xs, 0.5):6.1f} ms  "
            f"p99 {pct(xs, 0.99):6.1f} ms  errors {stats.errors.get(name, 0)}"
        )
    if stats.races_lost:
        print(
            f"    {stats.races_lost} results lost a race to a speculative copy of a slow "
            "task (answered 403 race_lost; not counted as errors)"
        )
    for name, count in sorted(stats.errors.items()):
        print(f"    errors: {count} {name}, the first: {stats.why.get(name)}")
    return rate


def run_ours(
    db: str,
    n: int,
    seconds: float,
    warmup: float,
    task_s: float,
    batch: int,
    windows: list[str],
    coordinators: int = 1,
    home_root: str | None = None,
) -> float:
    """The windows on ``db``; returns the last one's tasks/s (the saturated one's, when run).
    ``coordinators`` > 1 (PostgreSQL) runs that many processes on one database and home,
    the providers' connection pools spread over them in turn."""
    with tempfile.TemporaryDirectory(dir=home_root) as tmp, contextlib.ExitStack() as stack:
        home = Path(tmp)
        url_db = stack.enter_context(scratch_database("load")) if db == "postgres" else None
        procs, urls = [], []
        try:
            for _ in range(coordinators if db == "postgres" else 1):
                proc, url = start_coordinator(home, url_db)  # one by one: each migrates first
                procs.append(proc)
                urls.append(url)
            at = ", ".join(urls)
            print(f"gpudepin on {db}: {n} emulated providers, {seconds:.0f}s a window, at {at}")
            pids = [p.pid for p in procs]
            ran = asyncio.run(drive(urls, pids, n, seconds, warmup, task_s, batch, windows))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        labels = {
            "steady": f"{db}, steady (tasks run ~{task_s:g}s, one a poll)",
            "saturated": f"{db}, saturated (tasks run 0s, up to {batch} a poll)",
        }
        return [report(labels[w], stats) for w, stats in ran.items()][-1]


def file_create_us(root: str | None, n: int = 500) -> float:
    """CPU microseconds to create one empty file in a new folder of ``root``."""
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        t0 = time.process_time()
        for i in range(n):
            os.close(os.open(os.path.join(tmp, str(i)), os.O_WRONLY | os.O_CREAT, 0o644))
        return (time.process_time() - t0) / n * 1e6


def python_speed_s(n: int = 10_000_000) -> float:
    """CPU seconds this host takes for ``n`` additions in a pure-Python loop, printed at the
    start and the end of a run: the dispatch path is Python, so its figures move with this.
    On one host of this kind it read 0.35 to 0.94 s within an hour (2026-12-07, the last
    session), while SQLite's saturated window gave 600 to 750 tasks/s, against 1,400 on the
    host of the session before; compare figures of one run, not of two."""
    t0, total = time.process_time(), 0
    for i in range(n):
        total += i
    return time.process_time() - t0


def host_now(when: str) -> str:
    """The host's load average and Python speed, ``when`` read, for a run's first and
    last lines."""
    return (
        f"load average {os.getloadavg()[0]:.1f} {when}, "
        f"10M additions in a Python loop take {python_speed_s():.2f} s of CPU"
    )


def run_celery(n_tasks: int) -> float | None:
    try:
        import load_celery  # noqa: F401  (fails early when celery is missing)
    except ImportError as exc:
        print(f"celery: not available ({exc})")
        return None
    from load_celery import app, echo

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "load_celery", "worker", "--concurrency", "2",
         "--loglevel", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        echo.delay(0, 0).get(timeout=60)  # the worker is up
        t0 = time.perf_counter()
        results = [echo.delay(1, i) for i in range(n_tasks)]
        for r in results:
            r.get(timeout=120)
        rate = n_tasks / (time.perf_counter() - t0)
    finally:
        worker.terminate()
        worker.wait(20)
        app.close()
    print(f"celery (redis broker, 2 prefork workers): {n_tasks} tasks at {rate:.1f} tasks/s")
    return rate


def run_ray(n_tasks: int) -> float | None:
    try:
        import ray
    except ImportError:
        print("ray: not installed")
        return None
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:

        @ray.remote
        def echo(seed: int, index: int) -> str:
            return hashlib.sha256(f"echo {seed} {index}\n".encode()).hexdigest()

        ray.get(echo.remote(0, 0))
        t0 = time.perf_counter()
        ray.get([echo.remote(1, i) for i in range(n_tasks)])
        rate = n_tasks / (time.perf_counter() - t0)
    finally:
        ray.shutdown()
    print(f"ray (2 CPUs): {n_tasks} tasks at {rate:.1f} tasks/s")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--providers", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--task-s", type=float, default=5.0, help="run time of a task, steady window")
    ap.add_argument("--batch", type=int, default=8, help="tasks a poll brings, saturated window")
    ap.add_argument("--window", choices=("steady", "saturated", "both"), default="both")
    ap.add_argument("--no-celery", action="store_true")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument(
        "--coordinators", type=int, default=1, help="coordinator processes on PostgreSQL"
    )
    ap.add_argument("--home-root", help="folder for the coordinator's home (default: temp)")
    args = ap.parse_args()
    if args.home_root is not None and not os.path.isdir(args.home_root):
        ap.error(f"--home-root: {args.home_root} is not a folder")
    sys.path.insert(0, str(HERE))
    print(f"machine: {os.cpu_count()} CPUs, {host_now('at start')}")
    root = args.home_root or tempfile.gettempdir()
    print(f"coordinator home in {root}: a new file costs {file_create_us(root):.0f} us of CPU")
    dbs = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    windows = ["steady", "saturated"] if args.window == "both" else [args.window]
    ours = {
        db: run_ours(
            db,
            args.providers,
            args.seconds,
            args.warmup,
            args.task_s,
            args.batch,
            windows,
            args.coordinators,
            args.home_root,
        )
        for db in dbs
    }
    n_tasks = max(100, int(max(ours.values()) * args.seconds))
    others = {}
    if not args.no_celery:
        others["celery"] = run_celery(n_tasks)
    if not args.no_ray:
        others["ray"] = run_ray(n_tasks)
    for db, rate in ours.items():
        for name, theirs in others.items():
            if theirs:
                print(f"ratio gpudepin[{db}] / {name}: {rate / theirs:.2f}")
    print(host_now("at the end"))


if __name__ == "__main__":
    main()
