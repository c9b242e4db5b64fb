"""Blender rendering: a buyer's scene and frame range, split into frames across providers.

A job is a ``.blend`` scene plus parameters (``frames`` such as ``"1-24"``,
``resolution_percent``, ``samples``, ``format``, ``chunk``, ``seed``). Each task renders
one frame, or ``chunk`` consecutive frames of the list, with Cycles on the provider's
CPU (or GPU when the agent runs with ``device="cuda"``). A task's result is the frame's
PNG, or a zip of ``frame_NNNN.png`` files for a chunk. ``merge`` zips every frame and
makes an MP4 when ffmpeg is present.

Verification (``compare``). Pixels are decoded, never file bytes compared. Identical
pixels score 1.0; otherwise two images match when the PSNR reaches ``PSNR_THRESHOLD_DB``
(40 dB) and at most ``OUTLIER_LIMIT`` (0.2%) of their channel values differ by more than
``OUTLIER_TOLERANCE`` (8/255); the score is ``PSNR / 100`` capped below 1. Calibration on
the demo scene (see docs/benchmarks/render.md): a re-render on the same machine is
identical; a border (tile) render differs from the same region of the full frame by at
most 2/255 per channel, which is 48 dB or better (all pixels off by 2/255 would still be
42 dB); a provider that renders a quarter of the samples lands near 30 dB, a
neighbouring frame near 25 dB, and a blank image below 15 dB: all refused. The outlier
rule is for tiles: one random tile in nine of a frame rendered at 1 sample instead of 8
reaches 40 dB where the frame is calm, but every tile of a 1- or 2-sample frame has
0.37% or more values off by more than 8/255.
"""

from __future__ import annotations

import math
import random
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpudepin.core.errors import InvalidInput
from gpudepin.workloads import blender
from gpudepin.workloads.base import Comparison, RunContext, TaskPlan
from gpudepin.workloads.blender import BlenderError
from gpudepin.workloads.images import (
    Box,
    crop,
    is_blank,
    load_pixels,
    outlier_fraction,
    pixel_hash,
    psnr,
    read_box,
    write_box,
)

if TYPE_CHECKING:
    from gpudepin.workloads.images import Pixels

__all__ = [
    "OUTLIER_LIMIT",
    "OUTLIER_TOLERANCE",
    "PSNR_THRESHOLD_DB",
    "WORKLOAD",
    "BlenderError",
    "RenderWorkload",
    "compare_pixels",
    "is_blank",
    "parse_frames",
    "pick_tile",
    "pixel_hash",
]

PSNR_THRESHOLD_DB = 40.0
# An honest tile render is within 2/255 of the full frame in every channel value, so a
# few values far off mean the render is wrong even where the PSNR passes: a region that
# is calm at the buyer's samples still shows the sparse noise of fewer samples.
OUTLIER_TOLERANCE = 8
OUTLIER_LIMIT = 0.002
MAX_SAMPLES = 65_536
MAX_CHUNK = 1_000
MAX_SEED = 2**31 - 1
# A chunk's zip holds only small PNGs; a member larger than this is refused unread.
MAX_MEMBER_BYTES = 512 * 1024 * 1024
_PARAMS = ("frames", "resolution_percent", "samples", "format", "chunk", "seed")
_MEMBER = re.compile(r"^frame_(\d{4,})\.png$")


def frame_name(frame: int) -> str:
    """The file name of a frame in task results and in the merged zip."""
    return f"frame_{frame:04d}.png"


def parse_frames(text: str, first: int, last: int) -> list[int]:
    """Frames from ``"1-24"``, ``"5"`` or ``"1-10,12"``, sorted, within ``first..last``."""
    scene_range = f"the scene has frames {first}-{last}"
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or not all(parts):
        raise InvalidInput(
            f"frames: {text!r} names no frame; {scene_range}",
            hint=f"Give a range like '{first}-{last}', a frame like '{first}', or a list.",
        )
    frames: set[int] = set()
    for part in parts:
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if match is None:
            raise InvalidInput(
                f"frames: cannot read {part!r}; {scene_range}",
                hint="Use 'A-B' for a range, 'N' for one frame, commas between parts.",
            )
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        if end < start:
            raise InvalidInput(
                f"frames: range {part!r} is reversed; {scene_range}",
                hint=f"Write the first frame first: '{end}-{start}'.",
            )
        if start < first or end > last:
            raise InvalidInput(
                f"frames: {part!r} goes beyond the scene; {scene_range}",
                hint=f"Ask for frames between {first} and {last}.",
            )
        frames.update(range(start, end + 1))
    return sorted(frames)


def _int_param(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, default)
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise InvalidInput(
            f"{name}: expected a whole number from {low} to {high}, got {raw!r}",
            hint=f"Omit {name} to use {default}.",
        )
    return raw


def _label(frames: list[int]) -> str:
    if len(frames) == 1:
        return f"frame {frames[0]}"
    if frames == list(range(frames[0], frames[-1] + 1)):
        return f"frames {frames[0]}-{frames[-1]}"
    return "frames " + ",".join(str(frame) for frame in frames)


def _border(spec: dict[str, Any], box: Box) -> list[float]:
    """Blender's border (bottom-left origin, fractions) for a top-left pixel box.

    Blender truncates ``fraction * size`` to find the border's pixels, so each edge is
    nudged half a pixel inwards to land on the intended pixel whatever the rounding.
    """
    width, height = spec["width"], spec["height"]
    left, top, right, bottom = box
    return [
        min(1.0, (left + 0.5) / width),
        min(1.0, (height - bottom + 0.5) / height),
        min(1.0, (right + 0.5) / width),
        min(1.0, (height - top + 0.5) / height),
    ]


def _scene(inputs: dict[str, Path]) -> Path:
    scene = inputs.get("scene")
    if scene is None or not Path(scene).is_file():
        raise InvalidInput(
            f"scene: no .blend file at {scene}" if scene else "scene: no scene file given",
            hint="Pass the job's scene as the input named 'scene'.",
        )
    return Path(scene)


def compare_pixels(a: Pixels, b: Pixels, what: str) -> Comparison:
    """The verdict on two decoded renders of the same pixels; ``what`` names them in it."""
    if a.shape != b.shape:
        return Comparison(
            False,
            0.0,
            f"{what}: sizes differ ({a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]})",
        )
    db = psnr(a, b)
    if math.isinf(db):
        return Comparison(True, 1.0, f"{what}: identical pixels")
    score = min(db / 100.0, 0.999)
    if db < PSNR_THRESHOLD_DB:
        return Comparison(False, score, f"{what}: PSNR {db:.1f} dB (< {PSNR_THRESHOLD_DB:.0f} dB)")
    outliers = outlier_fraction(a, b, OUTLIER_TOLERANCE)
    equal = outliers <= OUTLIER_LIMIT
    detail = (
        f"{what}: PSNR {db:.1f} dB (>= {PSNR_THRESHOLD_DB:.0f} dB), {outliers:.2%} of values "
        f"off by more than {OUTLIER_TOLERANCE}/255 ({'<=' if equal else '>'} {OUTLIER_LIMIT:.1%})"
    )
    return Comparison(equal, score, detail)


def _zip_frames(path: Path, out: Path) -> dict[int, Path]:
    """Extract a chunk result into ``out``; frame number to PNG path."""
    found: dict[int, Path] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            match = _MEMBER.match(info.filename)
            if match is None or info.file_size > MAX_MEMBER_BYTES:
                raise InvalidInput(f"result: unexpected member {info.filename!r} in {path.name}")
            found[int(match.group(1))] = Path(archive.extract(info, out))
    return found


class RenderWorkload:
    """The ``render`` job kind: Blender scenes rendered frame by frame."""

    name = "render"
    input_names: tuple[str, ...] = ("scene",)

    def validate(self, params: dict[str, Any], inputs: dict[str, Path]) -> dict[str, Any]:
        """Check the scene and parameters against the scene itself; return the job spec."""
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise InvalidInput(
                f"unknown render parameter(s): {', '.join(unknown)}",
                hint=f"Render jobs take: {', '.join(_PARAMS)}.",
            )
        scene_path = _scene(inputs)
        blender.check_blend_file(scene_path)
        fmt = str(params.get("format", "PNG")).upper()
        if fmt != "PNG":
            raise InvalidInput(
                f"format: {fmt!r} is not supported yet", hint="Use format PNG (the default)."
            )
        chunk = _int_param(params, "chunk", 1, 1, MAX_CHUNK)
        seed = _int_param(params, "seed", 0, 0, MAX_SEED)
        scene = blender.probe_scene(scene_path)
        if scene["engine"] != "CYCLES":
            raise InvalidInput(
                f"scene: renders with {scene['engine']}; providers render with Cycles only",
                hint="In Blender set Render Properties > Render Engine to Cycles and re-save.",
            )
        if not scene["has_camera"]:
            raise InvalidInput(
                "scene: has no active camera", hint="Add a camera and make it the scene camera."
            )
        first, last = int(scene["frame_start"]), int(scene["frame_end"])
        raw_frames = params.get("frames", f"{first}-{last}")
        frames = parse_frames(str(raw_frames), first, last)
        percent = _int_param(params, "resolution_percent", scene["resolution_percent"], 1, 100)
        samples = _int_param(params, "samples", scene["samples"], 1, MAX_SAMPLES)
        return {
            "frames": frames,
            "chunk": chunk,
            "seed": seed,
            "samples": samples,
            "resolution_percent": percent,
            "width": scene["resolution_x"] * percent // 100,
            "height": scene["resolution_y"] * percent // 100,
            "format": fmt,
            "engine": "CYCLES",
            "fps": scene["fps"],
            "scene": {
                "frame_start": first,
                "frame_end": last,
                "resolution_x": scene["resolution_x"],
                "resolution_y": scene["resolution_y"],
                "resolution_percent": scene["resolution_percent"],
                "samples": scene["samples"],
                "blender_version": scene["blender_version"],
            },
        }

    def split(self, spec: dict[str, Any]) -> list[TaskPlan]:
        """One task per ``chunk`` frames of the list, in frame order."""
        frames: list[int] = spec["frames"]
        size: int = spec["chunk"]
        return [
            # units: what the buyer's per-frame price is multiplied by for this task
            TaskPlan(_label(part), {"frames": part, "units": len(part)})
            for part in (frames[i : i + size] for i in range(0, len(frames), size))
        ]

    def check_result(self, spec: dict[str, Any], task: dict[str, Any], result: Path) -> str | None:
        """A cheap sanity check at submission: the result decodes to the frames the task
        asked for, at the job's size. Whether the pixels are right is verification's job."""
        from PIL import Image, UnidentifiedImageError

        want = (spec["width"], spec["height"])
        try:
            if len(task["frames"]) == 1:
                pngs = [result]
                tmp = None
            else:
                tmp = tempfile.TemporaryDirectory()
                found = _zip_frames(result, Path(tmp.name))
                if sorted(found) != sorted(task["frames"]):
                    return f"result holds frames {sorted(found)}, not {task['frames']}"
                pngs = list(found.values())
            for png in pngs:
                with Image.open(png) as img:
                    if img.format != "PNG" or img.size != want:
                        return f"result is a {img.format} of {img.size}, expected a PNG of {want}"
        except (UnidentifiedImageError, OSError, zipfile.BadZipFile, InvalidInput) as exc:
            return f"result is not a readable image: {exc}"
        finally:
            if tmp is not None:
                tmp.cleanup()
        return None

    def _options(self, spec: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        return {
            "samples": spec["samples"],
            "seed": spec["seed"],
            "resolution_percent": spec["resolution_percent"],
            "device": ctx.device,
        }

    def run(
        self, spec: dict[str, Any], task: dict[str, Any], inputs: dict[str, Path], ctx: RunContext
    ) -> Path:
        """Render the task's frames; a PNG for one frame, else a zip of ``frame_NNNN.png``.

        A task spec with ``"tile": [left, top, right, bottom]`` renders that region of
        its single frame instead (see ``render_tile``).
        """
        frames: list[int] = task.get("frames", [])
        if not frames:
            raise InvalidInput("task: names no frame to render")
        if "tile" in task:
            if len(frames) != 1:
                raise InvalidInput("task: a tile audit renders exactly one frame")
            left, top, right, bottom = (int(v) for v in task["tile"])
            return self.render_tile(spec, frames[0], (left, top, right, bottom), inputs, ctx)
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        _, log = blender.render(
            _scene(inputs),
            self._options(spec, ctx),
            ctx.workdir / "frame_",
            frames,
            ctx.threads,
        )
        (ctx.workdir / "blender.log").write_text(log)
        paths = [ctx.workdir / frame_name(frame) for frame in frames]
        missing = [path.name for path in paths if not path.is_file()]
        if missing:
            raise BlenderError(f"Blender wrote no {', '.join(missing)}: {blender.last_lines(log)}")
        if len(paths) == 1:
            return paths[0]
        archive = ctx.workdir / f"frames_{frames[0]:04d}-{frames[-1]:04d}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
            for path in paths:
                out.write(path, path.name)
        return archive

    def render_tile(
        self, spec: dict[str, Any], frame: int, box: Box, inputs: dict[str, Path], ctx: RunContext
    ) -> Path:
        """Render only ``box`` = (left, top, right, bottom) pixels of ``frame``, for audits.

        The PNG records its box, so ``compare(spec, tile, full_frame)`` finds the region.
        """
        left, top, right, bottom = box
        if not (0 <= left < right <= spec["width"] and 0 <= top < bottom <= spec["height"]):
            raise InvalidInput(
                f"tile: {box} is not inside the {spec['width']}x{spec['height']} frame"
            )
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        options = self._options(spec, ctx) | {"border": _border(spec, box)}
        prefix = ctx.workdir / f"tile_{left}_{top}_{right}_{bottom}_"
        _, log = blender.render(_scene(inputs), options, prefix, [frame], ctx.threads)
        path = prefix.parent / f"{prefix.name}{frame:04d}.png"
        if not path.is_file():
            raise BlenderError(f"Blender wrote no {path.name}: {blender.last_lines(log)}")
        write_box(path, box)
        return path

    def compare(self, spec: dict[str, Any], a: Path, b: Path) -> Comparison:
        """Compare two results of one task: frames, chunk zips, or a tile and its frame."""
        zipped = (zipfile.is_zipfile(a), zipfile.is_zipfile(b))
        if all(zipped):
            return self._compare_chunks(a, b)
        if any(zipped):
            return Comparison(False, 0.0, "one result is a chunk of frames, the other is not")
        pa, pb = load_pixels(a), load_pixels(b)
        if pa.shape != pb.shape:
            box_a, box_b = read_box(a), read_box(b)
            if box_a is not None and box_b is None:
                return self.compare_region(spec, a, b, box_a)
            if box_b is not None and box_a is None:
                return self.compare_region(spec, b, a, box_b)
        return compare_pixels(pa, pb, "frame")

    def compare_region(self, spec: dict[str, Any], tile: Path, full: Path, box: Box) -> Comparison:
        """Compare a tile render with the ``box`` region of a full frame."""
        region = crop(load_pixels(full), box)
        return compare_pixels(load_pixels(tile), region, f"tile {box}")

    def _compare_chunks(self, a: Path, b: Path) -> Comparison:
        with tempfile.TemporaryDirectory() as tmp:
            frames_a = _zip_frames(a, Path(tmp) / "a")
            frames_b = _zip_frames(b, Path(tmp) / "b")
            if sorted(frames_a) != sorted(frames_b):
                return Comparison(False, 0.0, "the two chunks hold different frames")
            verdicts = [
                compare_pixels(load_pixels(frames_a[n]), load_pixels(frames_b[n]), f"frame {n}")
                for n in sorted(frames_a)
            ]
        worst = min(verdicts, key=lambda verdict: verdict.score)
        return Comparison(all(v.equal for v in verdicts), worst.score, worst.detail)

    def merge(
        self, spec: dict[str, Any], results: list[tuple[TaskPlan, Path]], dest: Path
    ) -> list[Path]:
        """Write ``dest/frames.zip`` (every frame by number) and ``dest/render.mp4``.

        The MP4 is made only when ffmpeg is on PATH; without it the zip alone is returned.
        """
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            frames: dict[int, Path] = {}
            for index, (plan, path) in enumerate(results):
                expected: list[int] = plan.spec["frames"]
                if zipfile.is_zipfile(path):
                    got = _zip_frames(path, Path(tmp) / str(index))
                else:
                    got = {expected[0]: path} if len(expected) == 1 else {}
                if sorted(got) != expected:
                    raise InvalidInput(f"result of {plan.label}: holds frames {sorted(got)}")
                frames.update(got)
            archive = dest / "frames.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
                for frame in sorted(frames):
                    out.write(frames[frame], frame_name(frame))
            outputs = [archive]
            video = self._video(spec, [frames[n] for n in sorted(frames)], dest / "render.mp4")
            if video is not None:
                outputs.append(video)
        return outputs

    def _video(self, spec: dict[str, Any], pngs: list[Path], out: Path) -> Path | None:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None or not pngs:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            # Frame lists may have gaps ("1-10,12"); ffmpeg wants one unbroken sequence.
            for index, png in enumerate(pngs):
                shutil.copy(png, Path(tmp) / f"{index:06d}.png")
            cmd = [
                ffmpeg, "-y", "-loglevel", "error", "-framerate", str(spec.get("fps", 24)),
                "-i", str(Path(tmp) / "%06d.png"), "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out),
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg could not make the video: {proc.stderr.strip()[-300:]}")
        return out


def pick_tile(spec: dict[str, Any], rng: random.Random, side_fraction: float = 0.25) -> Box:
    """A random audit tile covering ``side_fraction`` of the frame's width and height."""
    width, height = spec["width"], spec["height"]
    tile_w = max(1, min(width, round(width * side_fraction)))
    tile_h = max(1, min(height, round(height * side_fraction)))
    left = rng.randrange(0, width - tile_w + 1)
    top = rng.randrange(0, height - tile_h + 1)
    return left, top, left + tile_w, top + tile_h


WORKLOAD = RenderWorkload()
