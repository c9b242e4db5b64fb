"""Rendering through the network vs. directly with Blender, side by side in one run.

    python3 benchmarks/render_overhead.py [--frames 8]

Direct: one `blender -b ... -f N` per frame, as the agent runs it, in this process's
shell. Network: a local coordinator and ONE agent process, the same frames submitted as
a job, timed from submission until the job is completed and merged. Prints both times,
the ratio (network / direct) and the per-task overhead in ms. Also prints a second
direct figure: Blender rendering the whole range in one process (no start-up per frame),
the floor no per-frame scheduler can beat.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.identity import load_or_create_key
from gpudepin.workloads.blender import blender_binary
from gpudepin.workloads.scenes import demo_scene_path


def direct_per_frame(scene: Path, frames: int, out: Path) -> float:
    started = time.perf_counter()
    for f in range(1, frames + 1):
        subprocess.run(
            [
                str(blender_binary()),
                "-b",
                "-noaudio",
                "--factory-startup",
                "--disable-autoexec",
                str(scene),
                "-o",
                str(out / "d_####"),
                "-F",
                "PNG",
                "-t",
                "1",
                "-f",
                str(f),
            ],
            check=True,
            capture_output=True,
        )
    return time.perf_counter() - started


def direct_animation(scene: Path, frames: int, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            str(blender_binary()),
            "-b",
            "-noaudio",
            "--factory-startup",
            "--disable-autoexec",
            str(scene),
            "-o",
            str(out / "a_####"),
            "-F",
            "PNG",
            "-t",
            "1",
            "-s",
            "1",
            "-e",
            str(frames),
            "-a",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def through_network(scene: Path, frames: int, home: Path, audits: bool) -> float:
    # With one agent no other operator can audit it: each audit case waits out
    # audit_wait_s before the job may complete, which measures the policy, not the path.
    extra = [] if audits else ["--no-audits"]
    net = LocalNetwork(home, providers=1, port=0, extra_coordinator_args=extra)
    net.start()
    try:
        with Client(net.api_url, load_or_create_key(home, "buyer")) as client:
            client.faucet("10")
            while not any(p["online"] for p in client.providers()):
                time.sleep(0.05)
            # warm-up: the coordinator probes the scene once per upload, then caches it
            _wait(
                client, client.submit_job("render", {"frames": "1"}, {"scene": scene}, "0.01")["id"]
            )
            started = time.perf_counter()
            job = client.submit_job("render", {"frames": f"1-{frames}"}, {"scene": scene}, "0.01")
            state = _wait(client, job["id"])
            took = time.perf_counter() - started
            if state != "completed":
                sys.exit(f"job ended {state}")
            return took
    finally:
        net.stop()


def _wait(client: Client, job_id: str) -> str:
    while (state := client.job(job_id)["state"]) not in ("completed", "failed", "cancelled"):
        time.sleep(0.05)
    return state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--audits", action="store_true", help="keep verification audits on")
    args = ap.parse_args()
    scene = demo_scene_path()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        direct = direct_per_frame(scene, args.frames, t)
        anim = direct_animation(scene, args.frames, t)
        network = through_network(scene, args.frames, t / "home", args.audits)
    print(f"frames: {args.frames}")
    per_frame_ms = direct / args.frames * 1000
    print(f"direct, one blender per frame: {direct:.2f} s ({per_frame_ms:.0f} ms/frame)")
    print(f"direct, one blender for all frames: {anim:.2f} s")
    mode = "audits on" if args.audits else "audits off"
    print(f"through the network, one agent, market on, {mode}: {network:.2f} s")
    print(f"ratio network / direct per frame: {network / direct:.3f}")
    print(f"ratio network / direct animation: {network / anim:.3f}")
    print(f"overhead per task: {(network - direct) / args.frames * 1000:.0f} ms")


if __name__ == "__main__":
    main()
