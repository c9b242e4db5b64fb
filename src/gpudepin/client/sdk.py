"""``Client``: signs in with the caller's Ethereum key and speaks the ``/v1`` API."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount

from gpudepin import API_VERSION, CLIENT_KEEPALIVE_S, INLINE_RESULT_BYTES
from gpudepin.core.errors import ERRORS_BY_CODE, GpudepinError, NotFound, Unavailable
from gpudepin.identity import load_or_create_key, result_message, sign_text
from gpudepin.settings import resolve_home


def local_network(home: Path) -> dict[str, Any]:
    """What `gpudepin up` wrote about the running local network."""
    path = home / "network.json"
    if not path.exists():
        raise NotFound(
            f"no local network found in {home}",
            hint="Start one with `gpudepin up`, or pass --coordinator URL.",
        )
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def agent_http(base_url: str, timeout: float) -> httpx.Client:
    """The HTTP client a session talks through: it keeps its connection between calls.

    httpx drops a connection idle for 5 s by default, so an agent running a 20 s task
    reconnected for every heartbeat (every 10 s): a thousand agents were a hundred new
    connections a second, and a coordinator busy on uvicorn's uvloop accepted about one
    new connection per turn of its event loop, so requests on new connections waited
    there for tens of seconds (docs/benchmarks/load.md).
    """
    limits = httpx.Limits(keepalive_expiry=CLIENT_KEEPALIVE_S)
    return httpx.Client(base_url=base_url, timeout=timeout, limits=limits)


def _raise_for(resp: httpx.Response) -> None:
    if resp.is_success:
        return
    try:
        err = resp.json()["error"]
        cls = ERRORS_BY_CODE.get(err["code"], GpudepinError)
        raise cls(err["message"], hint=err.get("hint") or "")
    except (ValueError, KeyError, TypeError):
        raise GpudepinError(f"HTTP {resp.status_code} from the coordinator") from None


class Client:
    """A signed-in session with one coordinator. Use as a context manager or ``close()``."""

    def __init__(
        self,
        base_url: str,
        account: LocalAccount,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
    ) -> None:
        """``http`` lets tests pass an in-process client (FastAPI's TestClient)."""
        self.base_url = base_url.rstrip("/")
        self.account = account
        self.address = account.address.lower()
        self._http = http or agent_http(self.base_url + "/v1", timeout)
        self._token: str | None = None

    @classmethod
    def local(cls, home: Path | str | None = None, key: str = "buyer") -> Client:
        """A client for the local network in the home folder, as key ``key``."""
        h = resolve_home(home)
        return cls(local_network(h)["api_url"], load_or_create_key(h, key))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport --------------------------------------------------------------------

    def login(self) -> None:
        """Sign-In with Ethereum: sign the coordinator's challenge, keep the bearer token."""
        msg = self._send("POST", "/auth/challenge", auth=False, json={"address": self.address})
        out = self._send(
            "POST",
            "/auth/login",
            auth=False,
            json={"message": msg["message"], "signature": sign_text(self.account, msg["message"])},
        )
        if out.get("api_version") != API_VERSION:
            raise GpudepinError(
                f"the coordinator speaks API v{out.get('api_version')}, this client v{API_VERSION}",
                hint="Install the same gpudepin version on both sides.",
            )
        self._token = out["token"]

    def _request(self, method: str, path: str, auth: bool = True, **kw: Any) -> httpx.Response:
        for attempt in (0, 1):
            headers = dict(kw.pop("headers", {}) or {})
            if auth:
                if self._token is None:
                    self.login()
                headers["Authorization"] = f"Bearer {self._token}"
            try:
                resp = self._http.request(method, path, headers=headers, **kw)
            except httpx.TransportError as exc:
                raise Unavailable(
                    f"cannot reach the coordinator at {self.base_url}",
                    hint="Is it running? Start a local network with `gpudepin up`.",
                ) from exc
            if resp.status_code == 401 and auth and attempt == 0:
                self._token = None  # session expired: sign in again, once
                continue
            _raise_for(resp)
            return resp
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, auth: bool = True, **kw: Any) -> Any:
        return self._request(method, path, auth=auth, **kw).json()

    def _download(self, path: str, dest: Path) -> Path:
        headers = {}
        if self._token is None:
            self.login()
        headers["Authorization"] = f"Bearer {self._token}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        try:
            with self._http.stream("GET", path, headers=headers) as resp:
                if not resp.is_success:
                    resp.read()
                    _raise_for(resp)
                with tmp.open("wb") as fh:
                    for chunk in resp.iter_bytes(1 << 20):
                        fh.write(chunk)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the coordinator at {self.base_url}") from exc
        tmp.replace(dest)
        return dest

    # ---- files --------------------------------------------------------------------------

    def upload(self, path: Path) -> str:
        """Upload a file (streamed); returns its sha256."""

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while block := fh.read(1 << 20):
                    yield block

        return str(self._send("PUT", "/blobs", content=chunks())["sha256"])

    # ---- buyer ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return dict(self._send("GET", "/health", auth=False))

    def submit_job(
        self,
        kind: str,
        params: dict[str, Any],
        files: dict[str, Path],
        price_per_task: str,
        max_attempts: int = 3,
        *,
        residency: dict[str, list[str]] | None = None,
        tier: str = "consumer",
        deadline_s: float | None = None,
        gpu_class: str | None = None,
        min_vram_gb: float = 0.0,
    ) -> dict[str, Any]:
        """Upload the job's files, then submit it; returns the job as the coordinator has it.

        ``price_per_task`` is the most paid per task unit; in the market it is the order's
        maximum, ``gpu_class`` and ``min_vram_gb`` its hardware requirements.

        ``residency`` restricts where it runs (allow_regions, deny_regions, require_tags,
        deny_tags); ``tier="enterprise"`` with ``deadline_s`` buys the deadline SLA.
        """
        inputs = {name: self.upload(Path(p)) for name, p in files.items()}
        body: dict[str, Any] = {
            "kind": kind,
            "params": params,
            "inputs": inputs,
            "price_per_task": price_per_task,
            "max_attempts": max_attempts,
            "residency": residency,
            "tier": tier,
            "deadline_s": deadline_s,
            "gpu_class": gpu_class,
            "min_vram_gb": min_vram_gb,
        }
        return dict(self._send("POST", "/jobs", json=body))

    def jobs(self) -> list[dict[str, Any]]:
        return list(self._send("GET", "/jobs"))

    def job(self, job_id: str, events: bool = False) -> dict[str, Any]:
        return dict(self._send("GET", f"/jobs/{job_id}", params={"events": events}))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._send("POST", f"/jobs/{job_id}/cancel"))

    def download_outputs(self, job_id: str, dest: Path) -> list[Path]:
        job = self.job(job_id)
        if job["state"] != "completed":
            raise NotFound(f"job {job_id} is {job['state']}, not completed: no outputs yet")
        return [
            self._download(f"/jobs/{job_id}/outputs/{o['name']}", dest / o["name"])
            for o in job["outputs"]
        ]

    def providers(self) -> list[dict[str, Any]]:
        return list(self._send("GET", "/providers", auth=False))

    def wallet(self) -> dict[str, Any]:
        return dict(self._send("GET", "/wallet"))

    def faucet(self, amount: str) -> dict[str, Any]:
        return dict(self._send("POST", "/wallet/faucet", json={"amount": amount}))

    def withdraw(self, amount: str, source: str = "available") -> dict[str, Any]:
        return dict(
            self._send("POST", "/wallet/withdraw", json={"amount": amount, "source": source})
        )

    def ledger_summary(self) -> dict[str, Any]:
        return dict(self._send("GET", "/ledger/summary", auth=False))

    # ---- provider ---------------------------------------------------------------------

    def register_provider(
        self, name: str, region: str, operator: str, hardware: dict[str, Any], version: str
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "region": region,
            "operator": operator,
            "hardware": hardware,
            "agent_version": version,
        }
        return dict(self._send("POST", "/providers/register", json=body))

    def heartbeat(self, held: list[str] | None = None) -> dict[str, Any]:
        """Say this provider is alive; ``held`` names the tasks it works on, so that only
        those stay assigned to it (without it, every task assigned to it does)."""
        body = None if held is None else {"held": held}
        return dict(self._send("POST", "/providers/heartbeat", json=body))

    def poll(self, wait: float) -> dict[str, Any] | None:
        tasks = self.poll_tasks(wait, 1)
        return tasks[0] if tasks else None

    def poll_tasks(self, wait: float, max_tasks: int) -> list[dict[str, Any]]:
        """Long-poll for up to ``max_tasks`` tasks (a check or proof comes alone)."""
        # a long poll outlasts the default read timeout only when it actually waits
        extra = {"timeout": wait + 30} if wait > 0 else {}
        params = {"wait": wait, "max_tasks": max_tasks}
        out = self._send("POST", "/providers/poll", params=params, **extra)
        tasks: list[dict[str, Any]] = out.get("tasks") or []
        return tasks

    def download_input(self, task_id: str, name: str, dest: Path) -> Path:
        return self._download(f"/tasks/{task_id}/inputs/{name}", dest)

    def submit_result(self, task_id: str, path: Path, meta: dict[str, Any]) -> dict[str, Any]:
        """Submit a task's result with a signature over its content hash: a small result
        travels inside the submission, a larger one is uploaded first."""
        body: dict[str, Any] = {"meta": meta}
        if path.stat().st_size <= INLINE_RESULT_BYTES:
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            body["content_b64"] = base64.b64encode(data).decode()
        else:
            sha = self.upload(path)
        body |= {"sha256": sha, "signature": sign_text(self.account, result_message(task_id, sha))}
        return dict(self._send("POST", f"/tasks/{task_id}/result", json=body))

    def submit_results(self, results: list[tuple[str, Path, dict[str, Any]]]) -> list[Any]:
        """Submit several tasks' results, ``(task_id, path, meta)`` each, in one call.

        Each answer is ``{"task_id", "state", "reason"}``, or ``{"task_id", "error"}`` for
        one the coordinator refused: the others count regardless."""
        items = []
        for task_id, path, meta in results:
            item: dict[str, Any] = {"task_id": task_id, "meta": meta}
            if path.stat().st_size <= INLINE_RESULT_BYTES:
                data = path.read_bytes()
                sha = hashlib.sha256(data).hexdigest()
                item["content_b64"] = base64.b64encode(data).decode()
            else:
                sha = self.upload(path)
            sig = sign_text(self.account, result_message(task_id, sha))
            items.append(item | {"sha256": sha, "signature": sig})
        answers: list[Any] = self._send("POST", "/tasks/results", json={"results": items})[
            "results"
        ]
        return answers

    def fail_task(self, task_id: str, reason: str) -> dict[str, Any]:
        """Tell the coordinator this provider could not finish a task it holds."""
        return dict(self._send("POST", f"/tasks/{task_id}/fail", json={"reason": reason[:500]}))

    # ---- dashboard ----

    def stats(self) -> dict[str, Any]:
        """The network's headline figures now and 24 h ago (public, no session)."""
        return dict(self._send("GET", "/stats", auth=False))

    def network_figures(self, period_days: float = 30) -> dict[str, Any]:
        """The live network's viability ``NetworkFigures`` and scorecard (public)."""
        params = {"period_days": period_days}
        return dict(self._send("GET", "/stats/viability", auth=False, params=params))

    # ---- enterprise ----

    def job_audit(self, job_id: str) -> dict[str, Any]:
        """Who ran each task of a job, where, on what hardware, and where its data is kept."""
        return dict(self._send("GET", f"/jobs/{job_id}/audit"))

    def provider_standing(self) -> list[dict[str, Any]]:
        """Each provider's enterprise standing: hardware proof, stake, 30-day uptime."""
        return list(self._send("GET", "/providers/standing", auth=False))

    # ---- chain ----

    def chain_status(self) -> dict[str, Any]:
        """Whether the coordinator settles on chain, where, and whether settlement is halted."""
        return dict(self._send("GET", "/chain/status", auth=False))

    def chain_epochs(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self._send("GET", "/chain/epochs", auth=False, params={"limit": limit}))

    def chain_proof(self, address: str | None = None) -> dict[str, Any]:
        """The Merkle proof of what ``address`` (default: ours) is owed in the latest root."""
        return dict(self._send("GET", f"/chain/proof/{address or self.address}", auth=False))

    def chain_account(self, address: str | None = None) -> dict[str, Any]:
        """Earned, held, claimable and claimed figures of ``address`` (default: ours)."""
        return dict(self._send("GET", f"/chain/accounts/{address or self.address}", auth=False))

    def chain_deposits(self, tx_hash: str) -> list[dict[str, Any]]:
        """The deposits of a transaction the coordinator has credited (empty: not yet)."""
        return list(self._send("GET", f"/chain/deposits/{tx_hash}", auth=False))

    def chain_faucet(self, amount: str) -> dict[str, Any]:
        """Local chain only: test tokens ("0": gas money alone) to our address."""
        return dict(self._send("POST", "/chain/faucet", json={"amount": amount}))

    # ---- verification ---------------------------------------------------------------

    def stake(self, amount: str) -> dict[str, Any]:
        """Bond ``amount`` of your available tokens as provider stake."""
        return dict(self._send("POST", "/providers/stake", json={"amount": amount}))

    def unstake(self, amount: str) -> dict[str, Any]:
        """Start unbonding ``amount`` of stake (released after the unbonding delay)."""
        return dict(self._send("POST", "/providers/unstake", json={"amount": amount}))

    def stake_info(self) -> dict[str, Any]:
        return dict(self._send("GET", "/providers/stake"))

    def reputation(self, address: str | None = None) -> dict[str, Any]:
        """A provider's record (yours by default): verified tasks, faults, stake, ban."""
        who = (address or self.address).lower()
        return dict(self._send("GET", f"/providers/{who}/reputation", auth=False))

    def job_verification(self, job_id: str) -> dict[str, Any]:
        """Every verification decision of one of your jobs, with its evidence."""
        return dict(self._send("GET", f"/jobs/{job_id}/verification"))

    def hwproof_commit(self, challenge_id: str, commitment: str) -> list[int]:
        out = self._send("POST", f"/hwproof/{challenge_id}/commit", json={"commitment": commitment})
        return [int(r) for r in out["rows"]]

    def hwproof_answer(self, challenge_id: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(
            self._send("POST", f"/hwproof/{challenge_id}/answer", json={"answers": answers})
        )

    def dispute(self, dispute_id: str) -> dict[str, Any]:
        """A training dispute: interval, rounds, answers, referee step, verdict."""
        return dict(self._send("GET", f"/disputes/{dispute_id}"))

    def download_dispute_input(self, dispute_id: str, name: str, dest: Path) -> Path:
        """Party: the dataset or agreed checkpoint a bisection answer replays from."""
        return self._download(f"/disputes/{dispute_id}/inputs/{name}", dest)

    def dispute_answer(self, dispute_id: str, step: int, sha256: str) -> dict[str, Any]:
        """Party: commit, signed, to the state hash at the step a dispute asks for."""
        from gpudepin.core.disputes import answer_message

        sig = sign_text(self.account, answer_message(dispute_id, step, sha256))
        body = {"step": step, "sha256": sha256, "signature": sig}
        return dict(self._send("POST", f"/disputes/{dispute_id}/answer", json=body))

    # ---- storage ----

    def offer_storage(self, capacity_bytes: int) -> dict[str, Any]:
        """Offer this provider's disk for erasure-coded shards (0 withdraws the offer)."""
        body = {"capacity_bytes": capacity_bytes}
        return dict(self._send("POST", "/providers/storage", json=body))

    def fetch_shard(self, artifact: str, index: int, dest: Path) -> Path:
        """Download a shard this provider was chosen to hold."""
        return self._download(f"/shards/{artifact}/{index}", dest)

    def confirm_shard(self, artifact: str, index: int, sha256: str) -> dict[str, Any]:
        """Tell the coordinator the shard is stored and what its bytes hash to."""
        body = {"sha256": sha256}
        return dict(self._send("POST", f"/shards/{artifact}/{index}/held", json=body))

    def send_shard(self, artifact: str, index: int, data: bytes) -> dict[str, Any]:
        """Send a held shard back to the coordinator (for a read or a repair)."""
        return dict(self._send("PUT", f"/shards/{artifact}/{index}", content=data))

    def drop_shard(self, artifact: str, index: int) -> dict[str, Any]:
        """Say a shard the coordinator no longer counts as ours was deleted."""
        return dict(self._send("POST", f"/shards/{artifact}/{index}/dropped"))

    # ---- market ----

    def quote(
        self,
        kind: str,
        max_price: str,
        quantity: int = 1,
        *,
        duration_s: int = 0,
        gpu_class: str | None = None,
        min_vram_gb: float = 0.0,
        regions: list[str] | None = None,
        tier: str | None = None,
        task_seconds: float = 0.0,
    ) -> dict[str, Any]:
        """Dry run of an order: would it clear now, at what price and fee, or why not.
        ``max_price`` is tokens per task unit (batch) or per GPU-hour (lease)."""
        body = {
            "kind": kind,
            "max_price": max_price,
            "quantity": quantity,
            "duration_s": duration_s,
            "gpu_class": gpu_class,
            "min_vram_gb": min_vram_gb,
            "regions": regions,
            "tier": tier,
            "task_seconds": task_seconds,
        }
        return dict(self._send("POST", "/quote", auth=False, json=body))

    def market(self, window_s: float = 3600.0) -> dict[str, Any]:
        """Best standing asks and recent clearing prices per kind, class and region."""
        return dict(self._send("GET", "/market", auth=False, params={"window_s": window_s}))

    def order(self, order_id: str) -> dict[str, Any]:
        """One of your orders' auction: bids received, winners, prices or the reason."""
        return dict(self._send("GET", f"/orders/{order_id}"))

    def create_lease(
        self,
        gpu_class: str | None,
        duration_s: int,
        max_price_per_hour: str,
        *,
        regions: list[str] | None = None,
        gpus: int = 1,
        min_vram_gb: float = 0.0,
        tier: str | None = None,
        workload: str = "",
        uptime: float | None = None,
        failover: bool | None = None,
        replicas: int = 1,
    ) -> dict[str, Any]:
        """Rent GPUs: locks the whole lease's escrow and runs the auction. ``uptime`` is an
        SLA target in percent (99.9); ``failover`` re-auctions it if its provider dies."""
        body = {
            "uptime": uptime,
            "failover": failover,
            "replicas": replicas,
            "gpu_class": gpu_class,
            "duration_s": duration_s,
            "max_price_per_hour": max_price_per_hour,
            "regions": regions,
            "gpus": gpus,
            "min_vram_gb": min_vram_gb,
            "tier": tier,
            "workload": workload,
        }
        return dict(self._send("POST", "/leases", json=body))

    def leases(self, role: str = "buyer") -> list[dict[str, Any]]:
        return list(self._send("GET", "/leases", params={"role": role}))

    def lease(self, lease_id: str) -> dict[str, Any]:
        return dict(self._send("GET", f"/leases/{lease_id}"))

    def lease_sla(self, lease_id: str) -> dict[str, Any]:
        """A lease's measured uptime, its outages and what each cost whom."""
        return dict(self._send("GET", f"/leases/{lease_id}/sla"))

    def close_lease(self, lease_id: str) -> dict[str, Any]:
        """End a lease early; the unspent escrow returns to your balance."""
        return dict(self._send("POST", f"/leases/{lease_id}/close"))

    def market_work(self, wait: float = 0.0, since: float = 0.0) -> dict[str, Any]:
        """Provider: open orders you may bid on, your bids' outcomes, leases to run; waits
        up to ``wait`` seconds for an order opened or a lease awarded after ``since``."""
        extra = {"timeout": wait + 30} if wait > 0 else {}
        params = {"wait": wait, "since": since}
        return dict(self._send("GET", "/market/work", params=params, **extra))

    def place_bid(self, order_id: str, price: int, capacity: int, valid_until: float) -> None:
        """Provider: a sealed bid (base units per unit), signed over ``bid_message``."""
        from gpudepin.core.market import Bid, bid_message

        bid = Bid(order_id, self.address, price, capacity, valid_until)
        body = {
            "price": str(price),
            "capacity": capacity,
            "valid_until": valid_until,
            "signature": sign_text(self.account, bid_message(bid)),
        }
        self._send("POST", f"/orders/{order_id}/bids", json=body)

    def post_ask(self, kind: str, price: int, capacity: int, valid_until: float) -> dict[str, Any]:
        """Provider: a standing ask for instant spot (base units; capacity 0 withdraws)."""
        body = {"kind": kind, "price": str(price), "capacity": capacity, "valid_until": valid_until}
        return dict(self._send("POST", "/market/asks", json=body))

    def start_lease(self, lease_id: str) -> dict[str, Any]:
        return dict(self._send("POST", f"/leases/{lease_id}/start"))

    def lease_receipt(self, lease_id: str, cumulative_seconds: int, at: float) -> dict[str, Any]:
        """Provider: a usage receipt, signed over ``receipt_message``; bills new seconds."""
        from gpudepin.core.leases import UsageReceipt, receipt_message

        msg = receipt_message(UsageReceipt(lease_id, self.address, cumulative_seconds, at))
        body = {
            "cumulative_seconds": cumulative_seconds,
            "at": at,
            "signature": sign_text(self.account, msg),
        }
        return dict(self._send("POST", f"/leases/{lease_id}/receipts", json=body))

    # ---- ai ----

    def session_token(self) -> str:
        """The bearer token of this session (signing in first if needed): the API key an
        OpenAI client passes to a lease's embeddings endpoint."""
        if self._token is None:
            self.login()
        assert self._token is not None
        return self._token

    def lease_openai_base_url(self, lease_id: str) -> str:
        """``base_url`` for ``openai.OpenAI(base_url=..., api_key=client.session_token())``."""
        return f"{self.base_url}/v1/leases/{lease_id}/openai/v1"

    def lease_invoke(self, lease_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One request to the model a lease serves: ``{"input": [...]}`` for embeddings,
        ``{"inputs": {name: nested lists}}`` for an ONNX model."""
        return dict(self._send("POST", f"/leases/{lease_id}/invoke", json=payload))

    def lease_endpoint(self, lease_id: str) -> dict[str, Any]:
        """A served lease's readiness and request figures (latency p50/p95/p99)."""
        return dict(self._send("GET", f"/leases/{lease_id}/endpoint"))

    def lease_requests(self, lease_id: str, wait: float) -> dict[str, Any]:
        """Provider: buyers' requests for the lease this agent serves (long poll)."""
        return dict(self._send("GET", f"/leases/{lease_id}/requests", params={"wait": wait}))

    def lease_respond(
        self,
        lease_id: str,
        request_id: str,
        body: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        compute_ms: float | None = None,
    ) -> None:
        """Provider: the answer (or the error) to one relayed request."""
        payload = {"body": body, "error": error, "compute_ms": compute_ms}
        self._send("POST", f"/leases/{lease_id}/responses/{request_id}", json=payload)

    def lease_model(self, lease_id: str, dest: Path) -> Path:
        """Provider: download the ONNX model an onnx lease serves."""
        return self._download(f"/leases/{lease_id}/model", dest)

    def task_progress(
        self, task_id: str, step: int, checkpoint: Path, commitments: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Provider: upload a running training task's newest checkpoint and commitments."""
        body = {
            "step": step,
            "checkpoint_sha256": self.upload(checkpoint),
            "commitments": commitments,
        }
        return dict(self._send("POST", f"/tasks/{task_id}/progress", json=body))

    def job_progress(self, job_id: str) -> dict[str, Any]:
        """How far a training job's tasks got: last checkpointed step and commitments."""
        return dict(self._send("GET", f"/jobs/{job_id}/progress"))
