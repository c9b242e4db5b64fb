"""How long a new connection waits for its first answer while the server's loop is busy.

uvicorn serves on uvloop when it is installed. With its event loop busy, uvloop takes
one new connection per turn of the loop, so a thousand emulated agents that connected at
once under load waited up to 40 s and timed out (docs/benchmarks/load.md). The
coordinator's loop (``gpudepin.coordinator.serving.EagerAcceptLoop``) takes every waiting
connection at each turn. This measures the three side by side (uvloop, the coordinator's
loop, asyncio's own) on a bare uvicorn app that spends ``--cpu-ms`` of CPU on the loop per
request: ``--busy`` connections send requests back to back, then ``--new`` connections
open at once and each sends one.

    python3 benchmarks/accept.py [--busy 40] [--new 20] [--cpu-ms 10]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from typing import Any

import uvicorn

from gpudepin.cli.localnet import free_port

REQUEST = b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n"


def _app(cpu_s: float) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < cpu_s:  # the request's work, on the loop
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


LOOPS = {  # what uvicorn is told, by the name printed
    "uvloop": "uvloop",
    "eager": "gpudepin.coordinator.serving:EagerAcceptLoop",
    "asyncio": "asyncio",
}


def _serve(loop: str, cpu_s: float) -> tuple[uvicorn.Server, int]:
    port = free_port(0)
    config = uvicorn.Config(
        _app(cpu_s), host="127.0.0.1", port=port, loop=LOOPS[loop], log_level="error"
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


async def _clients(port: int, busy: int, new: int) -> list[float]:
    async def keep_busy(stop: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not stop.is_set():
            writer.write(REQUEST)
            await reader.readuntil(b"ok")
        writer.close()

    async def first_answer() -> float:
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        await reader.readuntil(b"ok")
        writer.close()
        return time.perf_counter() - t0

    stop = asyncio.Event()
    loaders = [asyncio.create_task(keep_busy(stop)) for _ in range(busy)]
    await asyncio.sleep(1.0)  # the busy connections are all in flight
    waits = sorted(await asyncio.gather(*(first_answer() for _ in range(new))))
    stop.set()
    await asyncio.gather(*loaders)
    return waits


def measure(loop: str, busy: int, new: int, cpu_s: float) -> list[float]:
    server, port = _serve(loop, cpu_s)
    try:
        return asyncio.run(_clients(port, busy, new))
    finally:
        server.should_exit = True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=40)
    ap.add_argument("--new", type=int, default=20)
    ap.add_argument("--cpu-ms", type=float, default=10.0)
    args = ap.parse_args()
    turn = args.busy * args.cpu_ms / 1000
    print(
        f"{args.busy} busy connections, {args.cpu_ms:g} ms of CPU a request (a turn of the "
        f"loop ~{turn:.2f} s), then {args.new} new connections at once"
    )
    seen = {}
    for loop in LOOPS:
        waits = measure(loop, args.busy, args.new, args.cpu_ms / 1000)
        seen[loop] = waits[len(waits) // 2], waits[-1]
        print(
            f"  {loop:<8} first answer on a new connection: p50 {seen[loop][0]:.2f} s, "
            f"max {seen[loop][1]:.2f} s"
        )
    for other in ("eager", "asyncio"):
        p50 = seen["uvloop"][0] / seen[other][0]
        worst = seen["uvloop"][1] / seen[other][1]
        print(f"ratio uvloop / {other}: p50 {p50:.1f}, max {worst:.1f}")


if __name__ == "__main__":
    main()
