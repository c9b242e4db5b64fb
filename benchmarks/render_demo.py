"""How long the whole-network demo's rendering takes: the demo scene's frames, one task
per frame, run by N parallel "providers" through the same runner subprocess the agent
uses (Python start, Blender start and render included). Prints the wall time, frames
per minute, the CPU seconds the tasks used (which do not depend on what else runs on
the machine) and the wall time that CPU time means on an idle machine of this size.

    python3 benchmarks/render_demo.py [--frames 24] [--providers 3] [--chunk 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gpudepin.workloads.render import WORKLOAD, is_blank
from gpudepin.workloads.scenes import demo_scene_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--providers", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=1)
    args = parser.parse_args()
    scene = demo_scene_path()
    spec = WORKLOAD.validate({"frames": f"1-{args.frames}", "chunk": args.chunk}, {"scene": scene})
    plans = WORKLOAD.split(spec)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "job.json").write_text(json.dumps(spec))

        def run(index: int) -> dict[str, object]:
            task = root / f"task{index}.json"
            task.write_text(json.dumps(plans[index].spec))
            cmd = [
                sys.executable, "-m", "gpudepin.workloads.runner", "--kind", "render",
                "--spec", str(root / "job.json"), "--task", str(task),
                "--input", f"scene={scene}", "--workdir", str(root / f"w{index}"),
            ]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            answer: dict[str, object] = json.loads(out)
            return answer

        started = time.perf_counter()
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with ThreadPoolExecutor(args.providers) as pool:
            answers = list(pool.map(run, range(len(plans))))
        wall = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
            cpu_after.ru_stime - cpu_before.ru_stime
        )
        pngs = [Path(str(a["result"])) for a in answers if str(a["result"]).endswith(".png")]
        blank = sum(is_blank(png) for png in pngs)
    print(
        f"{args.frames} frames of the demo scene ({spec['width']}x{spec['height']}, "
        f"{spec['samples']} samples), {len(plans)} tasks, {args.providers} providers, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"wall {wall:.1f} s = {60 * args.frames / wall:.0f} frames/min; blank frames: {blank}")
    cores = os.cpu_count() or 1
    print(
        f"CPU {cpu:.1f} s = {cpu / len(plans):.2f} s per task; on {cores} idle cores "
        f"about {cpu / min(cores, args.providers):.0f} s wall"
    )
    print(f"load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
