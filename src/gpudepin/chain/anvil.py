"""Find, start and stop Anvil, the local Ethereum node of the embedded setup.

Anvil comes from the npm package ``@foundry-rs/anvil-linux-amd64``, whose binary sits at
``node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil``. It listens on loopback only
and, given a state file, loads it at start and writes it back every few seconds and on
exit, so balances and contracts survive a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from gpudepin.core.errors import Unavailable

ANVIL_CHAIN_ID = 31337
NPM_PACKAGE = "@foundry-rs/anvil-linux-amd64"
INSTALL_HINT = (
    f"Install it with `npm install --no-save {NPM_PACKAGE}` in the repository, or "
    f"`npm install --prefix ~/.gpudepin/tools {NPM_PACKAGE}`, or set GPUDEPIN_ANVIL=/path/to/anvil."
)
_REPO_ROOT = Path(__file__).resolve().parents[3]
_PACKAGE_BIN = Path("node_modules") / NPM_PACKAGE / "bin" / "anvil"
# Pinned so gas figures do not move when Anvil's default hardfork does; it matches
# vyper 0.4's default EVM version.
HARDFORK = "prague"


def find_anvil() -> Path | None:
    """The Anvil binary: $GPUDEPIN_ANVIL, then PATH, then the npm package's copies."""
    env = os.environ.get("GPUDEPIN_ANVIL")
    if env:
        return Path(env) if Path(env).is_file() else None
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    for base in (_REPO_ROOT, Path.cwd(), Path.home() / ".gpudepin" / "tools"):
        candidate = base / _PACKAGE_BIN
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_anvil() -> Path:
    """Like :func:`find_anvil` but raises Unavailable with the install command."""
    path = find_anvil()
    if path is None:
        raise Unavailable("Anvil (the local Ethereum node) is not installed", hint=INSTALL_HINT)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def rpc_chain_id(url: str, timeout: float = 1.0) -> int | None:
    """The chain id the node at ``url`` reports, or None when it does not answer."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(json.loads(resp.read())["result"], 16)
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return None


class AnvilNode:
    """One Anvil process on 127.0.0.1; a context manager that always reaps it."""

    def __init__(
        self,
        state_file: Path | None = None,
        *,
        port: int | None = None,
        binary: Path | None = None,
        log_file: Path | None = None,
        state_interval_s: int = 2,
        block_time_s: int | None = None,
    ) -> None:
        self.state_file = state_file
        self.port = port
        self.binary = binary
        self.log_file = log_file
        self.state_interval_s = state_interval_s
        self.block_time_s = block_time_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        if self.port is None:
            raise Unavailable("Anvil has not been started", hint="Call start() first.")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 30.0) -> AnvilNode:
        """Start the node and return once it answers JSON-RPC; Unavailable if it cannot."""
        if self.running:
            return self
        binary = self.binary or require_anvil()
        if self.port is None:
            self.port = free_port()
        args = [str(binary), "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--hardfork", HARDFORK, "--chain-id", str(ANVIL_CHAIN_ID)]
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            args += ["--state", str(self.state_file)]
            args += ["--state-interval", str(self.state_interval_s)]
        if self.block_time_s:
            args += ["--block-time", str(self.block_time_s)]
        out = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            if self.log_file and not isinstance(out, int):
                out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise Unavailable(
                    f"Anvil exited at start with status {code}",
                    hint=f"Is port {self.port} taken? See {self.log_file or 'its output'}.",
                )
            if rpc_chain_id(self.rpc_url, timeout=0.5) == ANVIL_CHAIN_ID:
                return self
            time.sleep(0.05)  # polling interval of a bounded readiness loop
        self.stop()
        raise Unavailable(f"Anvil did not answer on {self.rpc_url} within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the node; SIGINT first so Anvil writes its state file, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
