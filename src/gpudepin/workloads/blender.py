"""Blender as a headless engine: find it, check a scene file, read a scene, render.

Blender always runs with ``--disable-autoexec`` (a buyer's scene may carry Python that
must never run on a provider) and ``--factory-startup`` (a provider's own preferences
must not change what a frame looks like). Our own set-up code runs through
``--python-expr`` and talks back with one marked JSON line on stdout.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from gpudepin.core.errors import InvalidInput, Unavailable

MARK = "GPUDEPIN_JSON "
_BLEND_MAGIC = b"BLENDER"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PROBE_TIMEOUT_S = 120

# Runs inside Blender after the scene is loaded: reports what validate() needs.
_PROBE_SCRIPT = r"""
import json, bpy
s = bpy.context.scene
r = s.render
info = {
    "frame_start": s.frame_start,
    "frame_end": s.frame_end,
    "resolution_x": r.resolution_x,
    "resolution_y": r.resolution_y,
    "resolution_percent": r.resolution_percentage,
    "engine": r.engine,
    "fps": r.fps / r.fps_base,
    "samples": s.cycles.samples if r.engine == "CYCLES" else None,
    "has_camera": s.camera is not None,
    "blender_version": bpy.app.version_string,
}
print("GPUDEPIN_JSON " + json.dumps(info), flush=True)
"""

# Runs inside Blender before rendering: pins every setting that changes the pixels so
# that two providers given the same spec produce the same image.
_SETUP_SCRIPT = r"""
import json, sys, bpy
o = json.loads(sys.argv[sys.argv.index("--") + 1])
s = bpy.context.scene
r = s.render
c = s.cycles
r.engine = "CYCLES"
c.samples = o["samples"]
c.seed = o["seed"]
c.use_animated_seed = False
c.use_denoising = False
r.resolution_percentage = o["resolution_percent"]
r.image_settings.file_format = "PNG"
r.image_settings.color_mode = "RGBA"
r.image_settings.color_depth = "8"
r.use_file_extension = True
r.use_overwrite = True
r.use_placeholder = False
border = o.get("border")
r.use_border = border is not None
if border is not None:
    r.border_min_x, r.border_min_y, r.border_max_x, r.border_max_y = border
    r.use_crop_to_border = True
used = "cpu"
c.device = "CPU"
if o["device"] == "cuda":
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for kind in ("OPTIX", "CUDA"):
        try:
            prefs.compute_device_type = kind
        except TypeError:
            continue
        prefs.get_devices()
        gpus = [d for d in prefs.devices if d.type == kind]
        if gpus:
            for d in prefs.devices:
                d.use = d.type == kind
            c.device = "GPU"
            used = kind.lower()
            break
print("GPUDEPIN_JSON " + json.dumps({"device": used}), flush=True)
"""


class BlenderError(RuntimeError):
    """Blender ran but did not produce what was asked; the message ends with its last lines."""


def blender_binary() -> Path:
    """The Blender executable: ``$GPUDEPIN_BLENDER`` if set, else ``blender`` on PATH."""
    configured = os.environ.get("GPUDEPIN_BLENDER")
    if configured:
        path = Path(configured)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise Unavailable(
            f"GPUDEPIN_BLENDER points to {configured}, which is not an executable file",
            hint="Set GPUDEPIN_BLENDER to the blender binary, or unset it to use PATH.",
        )
    found = shutil.which("blender")
    if found is None:
        raise Unavailable(
            "Blender is not installed on this machine",
            hint="Install it (`sudo apt-get install -y blender`) or set GPUDEPIN_BLENDER "
            "to the path of a blender binary (3.x or newer).",
        )
    return Path(found)


def last_lines(text: str, count: int = 6) -> str:
    """The last non-empty lines of Blender's output, joined on one line for an error."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "(no output)"


def check_blend_file(path: Path) -> None:
    """Refuse a file that is not a Blender scene, by its magic bytes.

    Blender writes plain files starting ``BLENDER`` and, when compression is on,
    gzip (up to 2.9x) or zstd (3.0 and newer) streams around the same header.
    """
    if not path.is_file():
        raise InvalidInput(f"scene: no file at {path}", hint="Upload a .blend file.")
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(_BLEND_MAGIC):
        return
    if head.startswith(_GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as fh:
                inner = fh.read(len(_BLEND_MAGIC))
        except (OSError, EOFError):
            inner = b""
        if inner == _BLEND_MAGIC:
            return
    # The standard library has no zstd; Blender's own probe confirms such a file.
    elif head.startswith(_ZSTD_MAGIC):
        return
    raise InvalidInput(
        f"scene: {path.name} is not a Blender .blend file",
        hint="Save the scene from Blender with File > Save and upload that .blend file.",
    )


def run_blender(args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run headless Blender with our fixed safety flags followed by ``args``."""
    cmd = [str(blender_binary()), "-b", "-noaudio", "--factory-startup", "--disable-autoexec"]
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout, check=False)


def marked_json(stdout: str) -> dict[str, Any] | None:
    """The last JSON object our scripts printed after ``MARK``, if any."""
    found: dict[str, Any] | None = None
    for line in stdout.splitlines():
        if line.startswith(MARK):
            found = json.loads(line[len(MARK) :])
    return found


def probe_scene(path: Path) -> dict[str, Any]:
    """Open the scene in Blender and return its frame range, resolution and engine.

    Answers are remembered per file version (path, size, modification time), so that
    validating several parameter sets against one upload starts Blender once.
    """
    stat = path.stat()
    return dict(_probe(str(path.resolve()), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _probe(path_text: str, size: int, mtime_ns: int) -> dict[str, Any]:
    path = Path(path_text)
    try:
        proc = run_blender(
            [str(path), "--python-exit-code", "1", "--python-expr", _PROBE_SCRIPT],
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise InvalidInput(
            f"scene: Blender took more than {PROBE_TIMEOUT_S} s to open {path.name}",
            hint="Check that the scene opens quickly in Blender and has no huge packed data.",
        ) from exc
    info = marked_json(proc.stdout)
    if info is None:
        raise InvalidInput(
            f"scene: Blender could not read {path.name}: " + last_lines(proc.stdout + proc.stderr),
            hint="Open and re-save the scene in Blender 3.x, then upload it again.",
        )
    return info


def render(
    scene: Path, options: dict[str, Any], output: Path, frames: list[int], threads: int
) -> tuple[str, str]:
    """Render ``frames`` of ``scene`` to ``output`` + ``####.png`` with ``options`` pinned.

    Returns the device Cycles used (``cpu``, ``cuda`` or ``optix``) and Blender's output.
    Raises ``BlenderError`` with Blender's last lines when it exits with an error.
    """
    args = [
        str(scene),
        "--python-exit-code",
        "1",
        "--python-expr",
        _SETUP_SCRIPT,
        "-o",
        f"{output}####",
        "-t",
        str(max(threads, 0)),
        "-f",
        ",".join(str(frame) for frame in frames),
        "--",
        json.dumps(options),
    ]
    proc = run_blender(args)
    log = proc.stdout + proc.stderr
    reported = marked_json(proc.stdout)
    if proc.returncode != 0 or reported is None:
        raise BlenderError(f"Blender failed (exit {proc.returncode}): {last_lines(log)}")
    return str(reported["device"]), log
