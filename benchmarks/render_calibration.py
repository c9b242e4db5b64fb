"""Calibrate the render verification threshold and time the demo scene.

Renders frame 12 of the shipped demo scene honestly and in the ways a cheating or
careless provider might (fewer samples, another seed, the neighbouring frame, a blank
image, a tile), then prints each PSNR and share of values far off against the honest
frame with the verdict; how often one random audit tile refuses a frame rendered with
fewer samples; and the wall time of one frame (Blender start-up included).

    python3 benchmarks/render_calibration.py
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from pathlib import Path

from PIL import Image

from gpudepin.workloads.base import RunContext
from gpudepin.workloads.images import crop, load_pixels, outlier_fraction, psnr
from gpudepin.workloads.render import (
    OUTLIER_LIMIT,
    OUTLIER_TOLERANCE,
    PSNR_THRESHOLD_DB,
    WORKLOAD,
    compare_pixels,
    pick_tile,
)
from gpudepin.workloads.scenes import demo_scene_path

FRAME = 12
TILES = 1000


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
            ("same frame rendered again", load_pixels(again), reference),
            ("tile vs region of full frame", load_pixels(tile), crop(reference, box)),
            (f"{max(1, spec['samples'] // 4)} samples instead of {spec['samples']}",
             load_pixels(quarter), reference),
            ("seed 1 instead of 0", load_pixels(reseeded), reference),
            (f"frame {FRAME + 1} instead of {FRAME}", load_pixels(neighbour), reference),
            ("flat grey image", load_pixels(blank), reference),
        ]  # fmt: skip
        fewer = {
            n: load_pixels(render(f"s{n}", spec | {"samples": n})[0])
            for n in sorted({1, max(1, spec["samples"] // 4), max(1, spec["samples"] // 2)})
        }
    print(f"demo scene {spec['width']}x{spec['height']}, {spec['samples']} samples, Cycles CPU")
    print(
        f"match: PSNR >= {PSNR_THRESHOLD_DB:.0f} dB and at most {OUTLIER_LIMIT:.1%} of values "
        f"off by more than {OUTLIER_TOLERANCE}/255"
    )
    for what, a, b in rows:
        db = psnr(a, b)
        shown = "identical" if math.isinf(db) else f"{db:6.1f} dB"
        outliers = outlier_fraction(a, b, OUTLIER_TOLERANCE)
        verdict = "accepted" if compare_pixels(a, b, what).equal else "refused"
        print(f"  {what:<34} {shown:>10} {outliers:7.2%} off  {verdict}")
    print(f"tile audits of frame {FRAME} rendered with fewer samples, {TILES} random 40x30 tiles:")
    for n, cheat in fewer.items():
        by_psnr = by_rule = 0
        for i in range(TILES):
            tile_box = pick_tile(spec, random.Random(i))
            honest_tile, cheat_tile = crop(reference, tile_box), crop(cheat, tile_box)
            by_psnr += psnr(honest_tile, cheat_tile) < PSNR_THRESHOLD_DB
            by_rule += not compare_pixels(honest_tile, cheat_tile, "tile").equal
        print(
            f"  {n} samples: refused by PSNR alone {by_psnr / TILES:6.1%}, "
            f"by PSNR and outliers {by_rule / TILES:6.1%}"
        )
    print(f"one frame, 1 thread, wall: {first_s:.2f} s, {second_s:.2f} s (start-up included)")
    print(f"one 40x30 tile, 1 thread, wall: {tile_s:.2f} s")


if __name__ == "__main__":
    main()
