"""The agent's AI duties beside running tasks: training progress and hosted endpoints.

* ``training_progress(client, task, outdir)``: while a training task runs, upload its
  newest checkpoint and commitments (``POST /v1/tasks/{id}/progress``), so that if this
  machine dies another provider resumes from there instead of from step 0.
* ``LeaseHosting``: for each lease awarded to this provider whose workload is
  ``serve:...``, load the model, start the lease, answer the buyers' requests that the
  coordinator relays (a long poll: the agent is behind NAT) and send usage receipts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpudepin.client import Client
from gpudepin.core.errors import Conflict, Forbidden, GpudepinError, NotFound

log = logging.getLogger("gpudepin.agent")


# ---- training progress ------------------------------------------------------------------


def _journal(train_dir: Path) -> list[dict[str, Any]]:
    path = train_dir / "commitments.jsonl"
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line being written right now
            entries.append(json.loads(line))
    return entries


class ProgressUploader:
    """Uploads a running training task's newest checkpoint, at most every ``every_s``."""

    def __init__(self, client: Client, task_id: str, outdir: Path, every_s: float = 1.0) -> None:
        self.client = client
        self.task_id = task_id
        self.train_dir = outdir / "train"
        self.every_s = every_s
        self.uploaded = -1
        self.stop = threading.Event()

    def sync(self) -> None:
        """Upload the newest checkpoint if it is newer than the last one sent."""
        from gpudepin.workloads.training import CHECKPOINT_DIR, checkpoint_name

        entries = _journal(self.train_dir)
        # the runner appends a journal line only once its checkpoint file is complete
        if not entries or entries[-1]["step"] <= self.uploaded or entries[-1]["step"] == 0:
            return
        step = int(entries[-1]["step"])
        path = self.train_dir / CHECKPOINT_DIR / checkpoint_name(step)
        self.client.task_progress(self.task_id, step, path, entries)
        self.uploaded = step

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                self.sync()
            except (GpudepinError, OSError) as exc:  # the next pass tries again
                log.info("task %s: progress upload failed: %s", self.task_id, exc)


@contextlib.contextmanager
def training_progress(client: Client, task: dict[str, Any], outdir: Path) -> Iterator[None]:
    """Upload progress while the body runs, for training tasks (a no-op for others)."""
    if task.get("kind") != "train":
        yield
        return
    uploader = ProgressUploader(client, task["id"], outdir)
    thread = threading.Thread(target=uploader.run, name=f"progress-{task['id']}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        uploader.stop.set()
        thread.join(timeout=30)


# ---- hosted endpoints -------------------------------------------------------------------


def _error_body(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, GpudepinError):
        return {"code": exc.code, "message": exc.message, "hint": exc.hint}
    return {"code": "internal", "message": f"{type(exc).__name__}: {exc}", "hint": ""}


class Host:
    """Serves one lease: loads its model, starts it, answers requests, sends receipts."""

    def __init__(
        self,
        client: Client,
        lease: dict[str, Any],
        workdir: Path,
        device: str,
        threads: int,
        receipt_s: float,
        poll_s: float,
    ) -> None:
        # its own connection: a long poll must not queue behind the agent's other calls
        self.client = Client(client.base_url, client.account)
        self.lease = lease
        self.lease_id: str = lease["id"]
        self.workdir = workdir
        self.device = device
        self.threads = threads
        self.receipt_s = receipt_s
        self.poll_s = poll_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"serve-{self.lease_id}", daemon=True)

    def _load(self) -> Any:
        from gpudepin.workloads.serving import load_server, parse_serve

        serve = parse_serve(self.lease["workload"])
        assert serve is not None
        if serve["kind"] == "onnx":
            path = self.workdir / "models" / f"{serve['model']}.onnx"
            if not path.exists():
                self.client.lease_model(self.lease_id, path)
            return load_server("onnx", path, device=self.device, threads=self.threads)
        import torch

        # the agent's thread budget: on a busy CPU more intra-op threads than cores made
        # one request ~10x slower (1.3 s instead of 0.1 s on 2 cores)
        torch.set_num_threads(self.threads)
        return load_server("embeddings", model_name=serve["model"], device=self.device)

    def _run(self) -> None:
        try:
            server = self._load()
            self.client.start_lease(self.lease_id)
        except GpudepinError as exc:
            log.warning("lease %s: cannot serve it: %s", self.lease_id, exc)
            return
        started = time.time()
        last_receipt = 0.0
        log.info("lease %s: serving %s", self.lease_id, self.lease["workload"])
        while not self.stop.is_set():
            try:
                if time.monotonic() - last_receipt >= self.receipt_s:
                    now = time.time()
                    self.client.lease_receipt(self.lease_id, int(now - started), now)
                    last_receipt = time.monotonic()
                out = self.client.lease_requests(self.lease_id, self.poll_s)
            except (Conflict, Forbidden, NotFound) as exc:  # the lease ended
                log.info("lease %s: stops serving: %s", self.lease_id, exc)
                break
            except GpudepinError as exc:
                log.info("lease %s: coordinator call failed: %s", self.lease_id, exc)
                self.stop.wait(0.5)
                continue
            if out.get("state") not in ("pending", "active"):
                log.info("lease %s is %s: stops serving", self.lease_id, out.get("state"))
                break
            for request in out["requests"]:
                self._answer(server, request)
        self.client.close()

    def _answer(self, server: Any, request: dict[str, Any]) -> None:
        from gpudepin.workloads.serving import openai_embeddings

        began = time.perf_counter()
        body: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        try:
            if request["op"] == "probe":  # the coordinator's uptime probe: alive and loaded
                body = {"ok": True}
            elif request["op"] == "openai_embeddings":
                body = openai_embeddings(server, request["body"])
            else:
                body = server.invoke(request["body"])
        except Exception as exc:  # the buyer gets the reason; the endpoint keeps serving
            error = _error_body(exc)
        compute_ms = (time.perf_counter() - began) * 1000
        with contextlib.suppress(NotFound):  # it timed out meanwhile
            self.client.lease_respond(self.lease_id, request["id"], body, error, compute_ms)


class LeaseHosting:
    """Watches the leases awarded to this provider and serves those that ask for it."""

    def __init__(
        self,
        client: Client,
        workdir: Path,
        stop: threading.Event,
        device: str = "cpu",
        threads: int = 1,
        every_s: float = 1.0,
        receipt_s: float = 1.0,
        poll_s: float = 1.0,
    ) -> None:
        self.client = client
        self.workdir = workdir
        self.stop = stop
        self.device = device
        self.threads = threads
        self.every_s = every_s
        self.receipt_s = receipt_s
        self.poll_s = poll_s
        self.hosts: dict[str, Host] = {}

    def sync(self) -> None:
        """Start a host for each new serving lease; forget the ones that stopped."""
        leases = self.client.market_work().get("leases", [])
        for lease in leases:
            if not str(lease.get("workload", "")).startswith("serve:"):
                continue  # bare GPU time is the market's runner's business
            host = self.hosts.get(lease["id"])
            if host is None or not host.thread.is_alive():
                if host is not None:
                    continue  # it stopped serving on purpose; the lease runs out
                host = self.hosts[lease["id"]] = Host(
                    self.client,
                    lease,
                    self.workdir,
                    self.device,
                    self.threads,
                    self.receipt_s,
                    self.poll_s,
                )
                host.thread.start()

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                self.sync()
            except NotFound:
                log.info("this coordinator has no market: no leases to serve")
                break
            except GpudepinError as exc:
                log.info("lease check failed: %s", exc)
        for host in self.hosts.values():
            host.stop.set()


# ---- a warm worker for catalog models ---------------------------------------------------


class WarmWorker:
    """One long-lived process for catalog-model inference tasks: the model it loaded for
    the first task serves the next ones (all-MiniLM-L6-v2 takes ~8 s to load, a task of
    1,024 texts ~2 s to embed), where a fresh child per task would load it every time."""

    def __init__(self) -> None:
        self._proc: Any = None
        self._conn: Any = None

    @staticmethod
    def suits(task: dict[str, Any]) -> bool:
        return task.get("kind") == "infer" and task["job_spec"].get("model") != "onnx"

    def run(self, argv: list[str], timeout: float) -> dict[str, Any]:
        """Run one task in the warm process; a timeout or crash ends the process."""
        if self._proc is None or not self._proc.is_alive():
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # no inherited threads or locks
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=_warm_loop, args=(child,), daemon=True)
            self._proc.start()
            child.close()
        self._conn.send(argv)
        if not self._conn.poll(timeout):
            self.close()
            return {"error": f"timed out after {timeout:.0f}s"}
        try:
            result: dict[str, Any] = self._conn.recv()
        except EOFError:
            self.close()
            return {"error": "the inference worker process died"}
        return result

    def kill(self) -> None:
        """Stop a task in progress (from a signal handler: the caller's ``run`` cleans up)."""
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.kill()

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
            self._conn.close()
        self._proc = self._conn = None


def _warm_loop(conn: Any) -> None:
    from gpudepin.workloads.runner import outcome

    while True:
        try:
            argv = conn.recv()
        except (EOFError, OSError):  # the agent is gone
            return
        conn.send(outcome(argv))
