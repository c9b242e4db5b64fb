"""The agent's side of erasure-coded storage: keep, send back and drop shards.

The coordinator lists what to do in each heartbeat response (``store``, ``send``,
``drop``; see coordinator/artifacts.py): the agent cannot be reached from outside, so it
pulls shards it was chosen to hold and pushes back the ones the coordinator asks for.
Shards live in ``HOME/agents/<name>/shards/<artifact>/<index>``. The work runs on a thread
of its own, so a large transfer never delays a heartbeat.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

from gpudepin.client import Client
from gpudepin.core.errors import GpudepinError

log = logging.getLogger("gpudepin.agent.shards")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class ShardKeeper:
    """Carries out shard duties, one batch at a time, off the heartbeat thread."""

    def __init__(self, client: Client, root: Path) -> None:
        self.client = client
        self.root = root
        self._busy = threading.Lock()

    def path(self, artifact: str, index: int) -> Path:
        return self.root / artifact / str(int(index))

    def handle(self, duties: dict[str, list[dict[str, Any]]] | None) -> None:
        """Start on ``duties`` unless a batch is still running (the next beat repeats them)."""
        if not duties or not self._busy.acquire(blocking=False):
            return
        threading.Thread(target=self._run, args=(duties,), name="shards", daemon=True).start()

    def _run(self, duties: dict[str, list[dict[str, Any]]]) -> None:
        try:
            self.run(duties)
        finally:
            self._busy.release()

    def run(self, duties: dict[str, list[dict[str, Any]]]) -> None:
        """Do every duty now; a failed one is logged and comes back with a later beat."""
        for kind, act in (("store", self.store), ("send", self.send), ("drop", self.drop)):
            for d in duties.get(kind, []):
                try:
                    act(d["artifact"], int(d["index"]), d["sha256"])
                except (GpudepinError, OSError) as exc:
                    log.warning(
                        "shard %s/%s: %s failed: %s", d["artifact"][:12], d["index"], kind, exc
                    )

    def store(self, artifact: str, index: int, sha256: str) -> None:
        dest = self.path(artifact, index)
        if not dest.exists() or _sha256(dest) != sha256:
            self.client.fetch_shard(artifact, index, dest)
        got = _sha256(dest)
        if got != sha256:  # damaged in transit: fetch it again next time
            dest.unlink()
            raise OSError(f"fetched bytes hash to {got[:12]}…, expected {sha256[:12]}…")
        self.client.confirm_shard(artifact, index, got)
        log.info("holding shard %s of %s", index, artifact[:12])

    def send(self, artifact: str, index: int, sha256: str) -> None:
        self.client.send_shard(artifact, index, self.path(artifact, index).read_bytes())
        log.info("sent shard %s of %s", index, artifact[:12])

    def drop(self, artifact: str, index: int, sha256: str) -> None:
        path = self.path(artifact, index)
        path.unlink(missing_ok=True)
        if path.parent.exists() and not any(path.parent.iterdir()):
            path.parent.rmdir()
        self.client.drop_shard(artifact, index)
