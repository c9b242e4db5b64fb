"""CPU a tiny inline result costs to keep in the blob store: ``BlobStore.put_bytes`` against
the pathlib way it was written before (``Path.exists``, ``mkdir(exist_ok=True)`` on every
call, ``Path.write_bytes``), side by side on fresh stores in one run.

    python3 benchmarks/inline_blobs.py [--results 5000] [--rounds 3]

In the load benchmark's saturated window keeping results took ~16% of the coordinator's
CPU samples (py-spy), all of it on the event loop.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

from gpudepin.coordinator.blobs import BlobStore


def pathlib_put(root: Path, data: bytes) -> str:
    """The previous ``put_bytes``, for comparison."""
    sha = hashlib.sha256(data).hexdigest()
    dest = root / sha[:2] / sha
    if dest.exists():
        return sha
    dest.parent.mkdir(exist_ok=True)
    tmp = root / f".inline-{sha}-{threading.get_ident()}"
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return sha


def cpu_us(put: object, results: list[bytes]) -> float:
    t0 = time.process_time()
    for data in results:
        put(data)  # type: ignore[operator]
    return (time.process_time() - t0) / len(results) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seen: dict[str, list[float]] = {"pathlib": [], "put_bytes": []}
        for r in range(args.rounds):
            for way in seen:  # fresh stores and fresh bytes each time, alternating
                root = Path(tmp) / f"{way}-{r}"
                store = BlobStore(root, 1 << 30)
                results = [f"echo {way} {r} {i}\n".encode() for i in range(args.results)]
                put = store.put_bytes if way == "put_bytes" else partial(pathlib_put, root)
                seen[way].append(cpu_us(put, results))
    for way, xs in seen.items():
        print(f"{way:<10} {min(xs):7.1f} us of CPU a result (best of {args.rounds})")
    print(f"ratio pathlib / put_bytes: {min(seen['pathlib']) / min(seen['put_bytes']):.2f}")


if __name__ == "__main__":
    main()
