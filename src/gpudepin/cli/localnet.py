"""A whole network on this machine: the coordinator and N provider agents as processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from gpudepin.core.errors import Conflict, Unavailable

if TYPE_CHECKING:
    from gpudepin.chain.anvil import AnvilNode

REGIONS = ("eu-west", "us-east", "eu-central", "ap-south")


def free_port(preferred: int) -> int:
    """``preferred`` if it is free on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise Unavailable("no free port on 127.0.0.1")


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until the coordinator answers /v1/health (bounded), or say why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unavailable(
                f"the coordinator exited with code {proc.returncode}",
                hint="See its log in HOME/logs/coordinator.log.",
            )
        try:
            if httpx.get(f"{url}/v1/health", timeout=1.0).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise Unavailable(f"the coordinator did not answer within {timeout:.0f}s")


@dataclass
class LocalNetwork:
    home: Path
    providers: int = 3
    port: int = 8470
    db_url: str | None = None
    assignment_ttl_s: float = 20.0
    hold_window_s: float = 30.0  # a local network releases held earnings quickly
    extra_coordinator_args: list[str] = field(default_factory=list)
    # settle on a local Anvil chain (HOME/chain/state.json) when Anvil is installed
    chain: bool = False
    epoch_interval_s: float = 10.0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _coordinator_args: list[str] = field(default_factory=list)
    api_url: str = ""
    anvil: AnvilNode | None = None
    chain_rpc: str = ""
    chain_note: str = ""  # one line for the user: where settlement runs, or why it is off
    offer_disk_gb: float = 0.0  # each agent offers this much disk for shards
    # the market on one machine: short auctions, quick stop of billing (docs/market.md)
    bid_window_s: float = 2.0
    market_cover: int = 2
    lease_grace_s: float = 15.0
    start_timeout_s: float = 15.0  # a winner that leaves work waiting this long loses it
    provider_args: dict[int, list[str]] = field(default_factory=dict)  # agent i's extra flags

    @property
    def state_file(self) -> Path:
        return self.home / "network.json"

    def _spawn(self, name: str, args: list[str]) -> None:
        logs = self.home / "logs"
        logs.mkdir(exist_ok=True)
        with (logs / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "gpudepin", "--home", str(self.home), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            )

    def start(self) -> str:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.state_file.exists():
            old = json.loads(self.state_file.read_text())
            if any(_alive(pid) for pid in old.get("pids", {}).values()):
                raise Conflict(
                    f"a local network is already running at {old['api_url']}",
                    hint="Stop it (Ctrl-C in its terminal) or use another --home.",
                )
        port = free_port(self.port)
        self.api_url = f"http://127.0.0.1:{port}"
        coord = ["coordinator", "--port", str(port), "--assignment-ttl", str(self.assignment_ttl_s)]
        coord += ["--hold-window", str(self.hold_window_s), "--unbonding", str(self.hold_window_s)]
        coord += ["--bid-window", str(self.bid_window_s), "--market-cover", str(self.market_cover)]
        coord += [
            "--lease-grace",
            str(self.lease_grace_s),
            "--start-timeout",
            str(self.start_timeout_s),
        ]
        if self.db_url:
            coord += ["--db", self.db_url]
        try:
            if self.chain:
                coord += self._start_chain()
            self._coordinator_args = coord + self.extra_coordinator_args
            self._spawn("coordinator", self._coordinator_args)
            wait_healthy(self.api_url, self.procs["coordinator"])
            for i in range(1, self.providers + 1):
                self.start_provider(i)
        except BaseException:
            self.stop()
            raise
        self._write_state()
        return self.api_url

    def _start_chain(self) -> list[str]:
        """Start Anvil on its state file and deploy the contracts on first run; returns
        the coordinator's chain arguments (none, with a note, when Anvil is missing)."""
        from gpudepin.chain.anvil import NPM_PACKAGE, AnvilNode, find_anvil
        from gpudepin.chain.anvil import free_port as any_free_port

        if find_anvil() is None:
            self.chain_note = (
                f"settlement is off: Anvil is not installed (`npm install {NPM_PACKAGE}` "
                "in the repository; see docs/chain.md)"
            )
            return []
        from gpudepin.chain.client import ChainClient
        from gpudepin.chain.config import ensure_deployed

        (self.home / "logs").mkdir(exist_ok=True)
        self.anvil = AnvilNode(
            self.home / "chain" / "state.json",
            port=any_free_port(),
            log_file=self.home / "logs" / "anvil.log",
        )
        self.anvil.start()
        self.chain_rpc = self.anvil.rpc_url
        cfg, fresh = ensure_deployed(ChainClient(self.chain_rpc), self.home)
        self.chain_note = (
            f"settling on the local chain at {self.chain_rpc} every {self.epoch_interval_s:g}s "
            f"({'deployed' if fresh else 'reused'} vault {cfg.addresses['vault']})"
        )
        return ["--chain-rpc", self.chain_rpc, "--epoch-interval", str(self.epoch_interval_s)]

    def restart_chain(self) -> None:
        """Stop Anvil (it saves its state) and start it again on the same port."""
        if self.anvil is None:
            raise Unavailable("this network runs without a chain")
        self.anvil.stop()
        self.anvil.start()
        self._write_state()

    def start_provider(self, i: int, api_url: str | None = None) -> None:
        """Start agent ``i``; ``api_url`` points it at another coordinator of the network."""
        name = f"provider-{i}"
        self._spawn(
            name,
            [
                "--coordinator",
                api_url or self.api_url,
                "--key",
                name,
                "provider",
                "start",
                "--name",
                name,
                "--region",
                REGIONS[(i - 1) % len(REGIONS)],
                "--operator",
                f"op-{i}",
                *(["--offer-disk-gb", str(self.offer_disk_gb)] if self.offer_disk_gb else []),
                *self.provider_args.get(i, []),
            ],
        )
        self._write_state()

    def add_coordinator(self, name: str) -> str:
        """Start one more coordinator process on the same PostgreSQL database (several
        coordinators serving one network); returns its URL."""
        if not self.db_url or not self.db_url.startswith("postgresql"):
            raise Conflict(
                "several coordinators need a shared PostgreSQL database",
                hint="Give the network db_url=postgresql://...",
            )
        args = list(self._coordinator_args)
        port = free_port(0)
        args[args.index("--port") + 1] = str(port)
        self._spawn(name, args)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, self.procs[name])
        self._write_state()
        return url

    def _write_state(self) -> None:
        self.state_file.write_text(
            json.dumps(
                {
                    "api_url": self.api_url,
                    "chain_rpc": self.chain_rpc,
                    "pids": {n: p.pid for n, p in self.procs.items()},
                },
                indent=2,
            )
        )

    def kill(self, name: str) -> None:
        """kill -9 one process (tests of failure handling use this)."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait()
        self._write_state()

    def restart_coordinator(self) -> None:
        """kill -9 the coordinator and start it again on the same port and database."""
        self.kill("coordinator")
        self._spawn("coordinator", self._coordinator_args)
        wait_healthy(self.api_url, self.procs["coordinator"])
        self._write_state()

    def stop(self) -> None:
        """Stop agents first, then the coordinator; kill whatever does not stop in time."""
        names = sorted(self.procs, key=lambda n: n == "coordinator")
        for name in names:
            with contextlib.suppress(ProcessLookupError):
                self.procs[name].send_signal(signal.SIGTERM)
        for name in names:
            proc = self.procs[name]
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self.anvil is not None:
            self.anvil.stop()  # after the coordinator: it may be posting a root
        self.state_file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
