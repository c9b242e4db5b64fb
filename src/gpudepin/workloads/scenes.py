"""A small animated Blender scene for demos and tests, built with Blender's own Python.

The shipped ``assets/demo.blend`` is the output of :func:`make_demo_scene` with its
defaults; rebuild it with ``python3 -m gpudepin.workloads.scenes PATH`` after changing
the script. It is tuned so that one frame renders in about a second on one CPU core,
Blender's start-up included, which lets a whole-network demo render 24 frames across
three local providers in well under a minute on two cores.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

from gpudepin.core.errors import InvalidInput
from gpudepin.workloads.blender import BlenderError, last_lines, run_blender

DEMO_FRAMES = 24
DEMO_WIDTH = 160
DEMO_HEIGHT = 120
DEMO_SAMPLES = 8

# Runs inside Blender. Everything it needs comes as JSON after "--" on the command line,
# so the scene is a pure function of those numbers.
_BUILD_SCRIPT = r"""
import json, math, sys
import bpy

opts = json.loads(sys.argv[sys.argv.index("--") + 1])
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = opts["samples"]
scene.cycles.use_adaptive_sampling = False
scene.cycles.use_denoising = False
scene.cycles.seed = 0
scene.cycles.use_animated_seed = False
scene.cycles.max_bounces = 4
scene.render.resolution_x = opts["width"]
scene.render.resolution_y = opts["height"]
scene.render.resolution_percentage = 100
scene.render.fps = 12
scene.frame_start = 1
scene.frame_end = opts["frames"]
scene.render.image_settings.file_format = "PNG"

world = bpy.data.worlds.new("sky")
world.use_nodes = True
world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.35, 0.45, 0.6, 1)
world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
scene.world = world


def material(name, rgb, metallic=0.0, roughness=0.5):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*rgb, 1)
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Roughness"].default_value = roughness
    return mat


def finish(obj, mat):
    obj.data.materials.append(mat)
    return obj


bpy.ops.mesh.primitive_plane_add(size=12, location=(0, 0, 0))
finish(bpy.context.object, material("floor", (0.8, 0.8, 0.75), roughness=0.8))

bpy.ops.mesh.primitive_cube_add(size=1.2, location=(-1.6, 0, 0.6))
cube = finish(bpy.context.object, material("red", (0.8, 0.1, 0.08)))

bpy.ops.mesh.primitive_uv_sphere_add(segments=24, ring_count=12, radius=0.6, location=(0, 0, 0.6))
steel = material("steel", (0.7, 0.7, 0.75), metallic=1.0, roughness=0.25)
sphere = finish(bpy.context.object, steel)
bpy.ops.object.shade_smooth()

bpy.ops.mesh.primitive_cone_add(radius1=0.6, depth=1.3, location=(1.6, 0, 0.65))
cone = finish(bpy.context.object, material("green", (0.1, 0.6, 0.2), roughness=0.35))

last = opts["frames"]
for frame, t in ((1, 0.0), (last, 1.0)):
    cube.rotation_euler = (0, 0, t * math.pi)
    cube.keyframe_insert("rotation_euler", frame=frame)
    sphere.location = (0, -1.2 + 2.4 * t, 0.6 + 0.8 * math.sin(t * math.pi))
    sphere.keyframe_insert("location", frame=frame)
    cone.scale = (1, 1, 1 + 0.6 * t)
    cone.keyframe_insert("scale", frame=frame)

bpy.ops.object.light_add(type="SUN", location=(3, -3, 6))
sun = bpy.context.object
sun.data.energy = 3.5
sun.data.angle = math.radians(8)
sun.rotation_euler = (math.radians(40), math.radians(15), math.radians(35))

bpy.ops.object.camera_add(location=(0, -6.5, 3.2), rotation=(math.radians(68), 0, 0))
scene.camera = bpy.context.object

bpy.ops.wm.save_as_mainfile(filepath=opts["path"], compress=True)
print("GPUDEPIN_SCENE_SAVED")
"""


def demo_scene_path() -> Path:
    """The demo scene shipped with the package (24 frames, 160x120, Cycles, 8 samples)."""
    return Path(str(resources.files("gpudepin.workloads") / "assets" / "demo.blend"))


def make_demo_scene(
    path: Path,
    frames: int = DEMO_FRAMES,
    width: int = DEMO_WIDTH,
    height: int = DEMO_HEIGHT,
    samples: int = DEMO_SAMPLES,
) -> Path:
    """Build the demo scene with Blender and save it (zstd-compressed) at ``path``.

    Raises ``InvalidInput`` for a size or frame count Blender cannot take and
    ``Unavailable`` when Blender is not installed.
    """
    for field, value, low, high in (
        ("frames", frames, 1, 100_000),
        ("width", width, 4, 16_384),
        ("height", height, 4, 16_384),
        ("samples", samples, 1, 65_536),
    ):
        if not low <= value <= high:
            raise InvalidInput(f"{field} must be between {low} and {high}, got {value}")
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    opts = {
        "path": str(path),
        "frames": frames,
        "width": width,
        "height": height,
        "samples": samples,
    }
    args = ["--python-exit-code", "1", "--python-expr", _BUILD_SCRIPT, "--", json.dumps(opts)]
    proc = run_blender(args, timeout=300)
    if proc.returncode != 0 or "GPUDEPIN_SCENE_SAVED" not in proc.stdout:
        raise BlenderError(
            "Blender could not build the demo scene: " + last_lines(proc.stdout + proc.stderr)
        )
    return path


def main() -> None:
    """``python3 -m gpudepin.workloads.scenes PATH``: (re)build the demo scene."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--frames", type=int, default=DEMO_FRAMES)
    parser.add_argument("--width", type=int, default=DEMO_WIDTH)
    parser.add_argument("--height", type=int, default=DEMO_HEIGHT)
    parser.add_argument("--samples", type=int, default=DEMO_SAMPLES)
    args = parser.parse_args()
    print(make_demo_scene(args.path, args.frames, args.width, args.height, args.samples))


if __name__ == "__main__":
    main()
