"""Calibrate the render verification threshold and time the demo scene.

Renders frame 12 of the shipped demo scene honestly and in the ways a cheating or
careless provider might (fewer samples, another seed, the neighbouring frame, a blank
image, a tile), then prints each PSNR against the honest frame next to the threshold,
and the wall time of one frame (Blender start-up included).

    python3 benchmarks/render_calibration.py
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from PIL import Image

from gpudepin.workloads.base import RunContext
from gpudepin.workloads.images import crop, load_pixels, psnr
from gpudepin.workloads.render import PSNR_THRESHOLD_DB, WORKLOAD
from gpudepin.workloads.scenes import demo_scene_path

FRAME = 12


def main() -> None:
    inputs = {"scene": demo_scene_path()}
    spec = WORKLOAD.validate({}, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def render(name: str, job: dict[str, object], frame: int = FRAME) -> tuple[Path, float]:
            started = time.perf_counter()
            path = WORKLOAD.run(job, {"frames": [frame]}, inputs, RunContext(root / name))
            return path, time.perf_counter() - started

        honest, first_s = render("honest", spec)
        again, second_s = render("again", spec)
        quarter, _ = render("quarter", spec | {"samples": max(1, spec["samples"] // 4)})
        reseeded, _ = render("seed", spec | {"seed": 1})
        neighbour, _ = render("neighbour", spec, FRAME + 1)
        blank = root / "blank.png"
        Image.new("RGBA", (spec["width"], spec["height"]), (128, 128, 128, 255)).save(blank)
        box = (40, 30, 80, 60)
        started = time.perf_counter()
        tile = WORKLOAD.render_tile(spec, FRAME, box, inputs, RunContext(root / "tile"))
        tile_s = time.perf_counter() - started

        reference = load_pixels(honest)
        rows = [
            ("same frame rendered again", psnr(reference, load_pixels(again))),
            ("tile vs region of full frame", psnr(load_pixels(tile), crop(reference, box))),
            (f"{max(1, spec['samples'] // 4)} samples instead of {spec['samples']}",
             psnr(reference, load_pixels(quarter))),
            ("seed 1 instead of 0", psnr(reference, load_pixels(reseeded))),
            (f"frame {FRAME + 1} instead of {FRAME}", psnr(reference, load_pixels(neighbour))),
            ("flat grey image", psnr(reference, load_pixels(blank))),
        ]  # fmt: skip
    print(f"demo scene {spec['width']}x{spec['height']}, {spec['samples']} samples, Cycles CPU")
    print(f"threshold {PSNR_THRESHOLD_DB:.0f} dB")
    for what, db in rows:
        shown = "identical" if math.isinf(db) else f"{db:6.1f} dB"
        verdict = "accepted" if db >= PSNR_THRESHOLD_DB else "refused"
        print(f"  {what:<34} {shown:>10}  {verdict}")
    print(f"one frame, 1 thread, wall: {first_s:.2f} s, {second_s:.2f} s (start-up included)")
    print(f"one 40x30 tile, 1 thread, wall: {tile_s:.2f} s")


if __name__ == "__main__":
    main()
