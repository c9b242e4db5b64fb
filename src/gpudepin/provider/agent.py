"""The provider agent's daemon loop."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from gpudepin import __version__
from gpudepin.client import Client
from gpudepin.core.errors import Forbidden, GpudepinError, Unavailable
from gpudepin.provider.hosting import LeaseHosting, WarmWorker, training_progress
from gpudepin.provider.shards import ShardKeeper

log = logging.getLogger("gpudepin.agent")


@dataclass
class AgentConfig:
    name: str
    region: str = "local"
    operator: str = ""
    threads: int = 1
    task_timeout_s: float = 3600.0
    long_poll_s: float = 10.0
    heartbeat_s: float = 3.0
    max_tasks: int | None = None  # stop after this many (tests, benchmarks)
    offer_disk_bytes: int = 0  # disk offered for erasure-coded shards of others' outputs
    min_free_mb: int = 64  # below this much free disk the agent takes no new work
    disk_recheck_s: float = 2.0
    market: Any = None  # a provider.bidder.MarketConfig: bid on orders, hold leases


class Agent:
    """Registers, heartbeats and runs tasks until stopped."""

    def __init__(
        self, client: Client, config: AgentConfig, hardware: dict[str, Any], workdir: Path
    ) -> None:
        self.client = client
        self.config = config
        self.hardware = hardware
        self.workdir = workdir
        self.cache = workdir / "cache"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.stop = threading.Event()
        self._warm = WarmWorker()
        self._child: BaseProcess | None = None
        self.done = 0
        self.shards = ShardKeeper(client, workdir / "shards")
        self._disk_trouble: str | None = None
        # the tasks this agent works on, named in every heartbeat (replaced, not mutated:
        # the heartbeat thread reads it)
        self._held: frozenset[str] = frozenset()

    # retry forever with capped exponential backoff: the coordinator may be restarting
    def _retry(self, what: str, fn: Any, *args: Any) -> Any:
        delay = 0.2
        while not self.stop.is_set():
            try:
                return fn(*args)
            except Unavailable:
                log.info("%s: coordinator unreachable, retrying in %.1fs", what, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 3.0) * random.uniform(0.8, 1.2)
        return None

    def register(self) -> None:
        c = self.config
        out = self._retry(
            "register",
            self.client.register_provider,
            c.name,
            c.region,
            c.operator,
            self.hardware,
            __version__,
        )
        if out:
            # beat often enough that one lost heartbeat never costs us a task
            self.config.heartbeat_s = min(self.config.heartbeat_s, out["assignment_ttl_s"] / 4)
        if c.offer_disk_bytes:
            self._retry("offer disk", self.client.offer_storage, c.offer_disk_bytes)
        log.info(
            "registered %s as %s (%s)", c.name, self.client.address, self.hardware["gpu_class"]
        )

    def _heartbeats(self) -> None:
        while not self.stop.wait(self.config.heartbeat_s):
            try:
                self.shards.handle(self.client.heartbeat(sorted(self._held)).get("shards"))
            except Forbidden:
                self._retry("re-register", self.register)
            except GpudepinError as exc:
                log.info("heartbeat failed: %s", exc)

    def run(self) -> None:
        self.register()
        beat = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)
        beat.start()
        device = self.hardware.get("device", "cpu")
        # serve the models of leases won (docs/ai.md)
        hosting = LeaseHosting(self.client, self.workdir, self.stop, device, self.config.threads)
        threading.Thread(target=hosting.run, name="hosting", daemon=True).start()
        market = None
        if self.config.market is not None:  # docs/market.md
            from gpudepin.provider.bidder import MarketEngine, start_market

            market = MarketEngine(
                self.client, self.hardware, self.config.region, self.config.market
            )
            start_market(market, self.stop)
        while not self.stop.is_set():
            if market is not None and market.holding:  # a lease holds the GPU: no batch work
                self.stop.wait(0.5)
                continue
            if not self._disk_ok():
                self.stop.wait(self.config.disk_recheck_s)
                continue
            try:
                task = self._retry("poll", self.client.poll, self.config.long_poll_s)
            except Forbidden as exc:  # banned, say: polling again cannot help
                log.error("the coordinator refuses this provider: %s", exc)
                break
            if task and task["kind"] == "hwproof":
                self._prove_hardware(task)
            elif task and task["kind"] == "bisect":  # a training dispute (docs/verification.md)
                self.answer_bisection(task)
            elif task:
                self._held = self._held | {task["id"]}
                try:
                    self._run_task(task)
                finally:
                    self._held = self._held - {task["id"]}
                self.done += 1
                if self.config.max_tasks is not None and self.done >= self.config.max_tasks:
                    break
        self.stop.set()
        beat.join(timeout=5)

    def _prove_hardware(self, task: dict[str, Any]) -> None:
        from gpudepin.provider.hwproof import answer_challenge

        try:
            answer_challenge(self.client, task, self.hardware.get("device", "cpu"))
        except GpudepinError as exc:
            log.warning("hardware proof failed: %s", exc)

    def answer_bisection(self, item: dict[str, Any]) -> None:
        """Answer a dispute's query with the state hash at its step (replayed here)."""
        from gpudepin.provider.disputes import answer_query

        try:
            answer_query(self.client, item, self.cache, self.bisection_hash())
        except GpudepinError as exc:  # a missed answer forfeits; say why
            log.warning("dispute %s: cannot answer: %s", item["id"], exc)

    def bisection_hash(self) -> Any:
        """How this agent computes a state hash for a dispute: by replaying honestly."""
        from gpudepin.workloads.training import hash_at

        return hash_at

    def shutdown(self) -> None:
        self.stop.set()
        child = self._child
        if child is not None and child.is_alive():
            _kill_group(child)
        self._warm.kill()

    def _fetch_inputs(self, task: dict[str, Any]) -> dict[str, Path]:
        paths = {}
        for name, sha in task["inputs"].items():
            dest = self.cache / sha
            if not dest.exists():
                self._retry("download", self.client.download_input, task["id"], name, dest)
            paths[name] = dest
        return paths

    def _disk_ok(self) -> bool:
        """Whether the work folder takes writes and has room; a full or read-only disk
        would fail every task, so the agent stops polling until it recovers."""
        probe = self.workdir / ".disk-probe"
        try:
            if shutil.disk_usage(self.workdir).free < self.config.min_free_mb * 2**20:
                raise OSError(f"less than {self.config.min_free_mb} MiB free")
            probe.write_bytes(b"\0" * 4096)
            probe.unlink()
        except OSError as exc:
            if self._disk_trouble is None:
                log.warning("not taking work: the work folder %s fails: %s", self.workdir, exc)
            self._disk_trouble = str(exc)
            return False
        if self._disk_trouble is not None:
            log.info("the work folder takes writes again: taking work")
            self._disk_trouble = None
        return True

    def _run_task(self, task: dict[str, Any]) -> None:
        log.info("task %s (%s %s)", task["id"], task["kind"], task["label"])
        try:
            self._fetch_and_run(task)
        except OSError as exc:  # full or read-only disk: give it back so others run it
            reason = f"the provider's disk failed: {exc}"
            log.warning("task %s: %s", task["id"], reason)
            self._retry("report failure", self._report_failure, task["id"], reason)

    def _fetch_and_run(self, task: dict[str, Any]) -> None:
        try:
            inputs = self._fetch_inputs(task)
        except GpudepinError as exc:
            log.warning("task %s: cannot fetch inputs: %s", task["id"], exc)
            return
        with tempfile.TemporaryDirectory(dir=self.workdir, prefix="task-") as tmp:
            work = Path(tmp)
            (work / "job.json").write_text(json.dumps(task["job_spec"]))
            (work / "task.json").write_text(json.dumps(task["task_spec"]))
            cmd = [
                "--kind",
                task["kind"],
                "--spec",
                str(work / "job.json"),
                "--task",
                str(work / "task.json"),
                "--workdir",
                str(work / "out"),
                "--device",
                self.hardware.get("device", "cpu"),
                "--threads",
                str(self.config.threads),
            ]
            for name, path in inputs.items():
                cmd += ["--input", f"{name}={path}"]
            started = time.monotonic()
            with training_progress(self.client, task, work / "out"):  # resumable if we die
                if WarmWorker.suits(task):  # catalog models stay loaded between tasks
                    outcome = self._warm.run(cmd, self.config.task_timeout_s)
                else:
                    outcome = self._execute(cmd)
            seconds = time.monotonic() - started
            if "result" not in outcome:
                reason = outcome.get("error", "the task failed")
                log.warning("task %s failed: %s", task["id"], reason)
                self._retry("report failure", self._report_failure, task["id"], reason)
                return
            meta = {
                "seconds": round(seconds, 3),
                "gpu_class": self.hardware["gpu_class"],
                "device": self.hardware.get("device", "cpu"),
                "engine_seconds": outcome.get("seconds"),
            }
            try:
                out = self._retry(
                    "submit", self.client.submit_result, task["id"], Path(outcome["result"]), meta
                )
            except Forbidden as exc:
                # the assignment expired meanwhile: the task went to someone else
                log.warning("task %s: result refused: %s", task["id"], exc)
                return
            if out:
                log.info("task %s %s", task["id"], out["state"])

    def _report_failure(self, task_id: str, reason: str) -> None:
        with contextlib.suppress(Forbidden):
            self.client.fail_task(task_id, reason)

    def _execute(self, argv: list[str]) -> dict[str, Any]:
        """Run one task in a child process; a timeout or crash becomes an error outcome.

        Children come from a fork server that has the workload modules imported already,
        which saves the interpreter start-up on every task (a sizeable share of a
        one-second frame). Each child leads its own process group, so a timeout kills
        the engine it started (Blender) too.
        """
        receiver, sender = _FORKS.Pipe(duplex=False)
        proc = _FORKS.Process(target=_run_in_child, args=(argv, sender), daemon=True)
        proc.start()
        sender.close()
        self._child = proc
        try:
            if not receiver.poll(self.config.task_timeout_s):
                _kill_group(proc)
                return {"error": f"timed out after {self.config.task_timeout_s:.0f}s"}
            try:
                result: dict[str, Any] = receiver.recv()
            except EOFError:
                proc.join(5)
                return {"error": f"the task process died (exit code {proc.exitcode})"}
            return result
        finally:
            proc.join(5)
            self._child = None
            receiver.close()


_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(["gpudepin.workloads.runner", "gpudepin.workloads.render"])


def _run_in_child(argv: list[str], sender: Connection) -> None:
    os.setsid()
    from gpudepin.workloads.runner import outcome

    sender.send(outcome(argv))
    sender.close()


def _kill_group(proc: BaseProcess) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if proc.pid is not None:
            os.killpg(proc.pid, signal.SIGKILL)
    proc.join(5)


def run_agent(client: Client, config: AgentConfig, hardware: dict[str, Any], workdir: Path) -> int:
    """Run until SIGINT/SIGTERM (or ``max_tasks``); returns the number of tasks done."""
    return run_agent_with(Agent(client, config, hardware, workdir))


def run_agent_with(agent: Agent) -> int:
    """Run ``agent`` until SIGINT/SIGTERM (or its ``max_tasks``)."""

    def _stop(signum: int, _frame: object) -> None:
        agent.shutdown()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    agent.run()
    return agent.done
