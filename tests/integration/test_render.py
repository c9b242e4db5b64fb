"""The render workload against the real Blender, on the shipped demo scene."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gpudepin.core.errors import InvalidInput
from gpudepin.workloads.base import RunContext, TaskPlan
from gpudepin.workloads.images import crop, load_pixels
from gpudepin.workloads.render import WORKLOAD, is_blank, pixel_hash
from gpudepin.workloads.scenes import demo_scene_path

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(
        shutil.which("blender") is None and not os.environ.get("GPUDEPIN_BLENDER"),
        reason="Blender is not installed (apt-get install blender, or set GPUDEPIN_BLENDER)",
    ),
]

INPUTS = {"scene": demo_scene_path()}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return WORKLOAD.validate({"frames": "1-3", "chunk": 2}, INPUTS)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("render")


@pytest.fixture(scope="module")
def rendered(spec: dict[str, Any], work: Path) -> dict[str, Path]:
    """Each task of the job rendered once, plus frame 2 on its own."""
    chunk, last = WORKLOAD.split(spec)
    return {
        "chunk": WORKLOAD.run(spec, chunk.spec, INPUTS, RunContext(work / "chunk")),
        "frame3": WORKLOAD.run(spec, last.spec, INPUTS, RunContext(work / "frame3")),
        "frame2": WORKLOAD.run(spec, {"frames": [2]}, INPUTS, RunContext(work / "frame2")),
    }


def test_validate_reads_the_scene(spec: dict[str, Any]) -> None:
    assert spec["frames"] == [1, 2, 3]
    assert spec["scene"]["frame_start"] == 1 and spec["scene"]["frame_end"] == 24
    assert (spec["width"], spec["height"]) == (160, 120)
    assert spec["engine"] == "CYCLES"
    json.dumps(spec)  # the coordinator stores it as JSON


def test_split_labels_tasks_by_frame(spec: dict[str, Any]) -> None:
    plans = WORKLOAD.split(spec)
    assert [plan.label for plan in plans] == ["frames 1-2", "frame 3"]


def test_frames_render_to_pngs_of_the_scene_size(rendered: dict[str, Path]) -> None:
    with zipfile.ZipFile(rendered["chunk"]) as archive:
        assert archive.namelist() == ["frame_0001.png", "frame_0002.png"]
    for path in (rendered["frame2"], rendered["frame3"]):
        assert path.suffix == ".png"
        with Image.open(path) as img:
            assert img.size == (160, 120)
        assert not is_blank(path)


def test_same_frame_rendered_twice_has_identical_pixels(
    spec: dict[str, Any], rendered: dict[str, Path], work: Path
) -> None:
    with zipfile.ZipFile(rendered["chunk"]) as archive:
        archive.extract("frame_0002.png", work / "unzipped")
    from_chunk = work / "unzipped" / "frame_0002.png"
    assert pixel_hash(from_chunk) == pixel_hash(rendered["frame2"])
    verdict = WORKLOAD.compare(spec, from_chunk, rendered["frame2"])
    assert verdict.equal and verdict.score == 1.0
    assert WORKLOAD.compare(spec, rendered["chunk"], rendered["chunk"]).equal


def test_compare_refuses_a_blank_or_wrong_frame(
    spec: dict[str, Any], rendered: dict[str, Path], work: Path
) -> None:
    blank = work / "blank.png"
    Image.new("RGBA", (160, 120), (90, 90, 90, 255)).save(blank)
    assert is_blank(blank)
    assert not WORKLOAD.compare(spec, rendered["frame2"], blank).equal
    assert not WORKLOAD.compare(spec, rendered["frame2"], rendered["frame3"]).equal


def test_a_tile_matches_its_region_of_the_full_frame(
    spec: dict[str, Any], rendered: dict[str, Path], work: Path
) -> None:
    box = (40, 30, 100, 75)
    tile = WORKLOAD.render_tile(spec, 2, box, INPUTS, RunContext(work / "tile"))
    assert load_pixels(tile).shape == (45, 60, 4)
    verdict = WORKLOAD.compare(spec, tile, rendered["frame2"])
    assert verdict.equal, verdict.detail
    assert not WORKLOAD.compare(spec, tile, rendered["frame3"]).equal


def test_every_tile_of_a_frame_rendered_with_fewer_samples_is_refused(
    spec: dict[str, Any], rendered: dict[str, Path], work: Path
) -> None:
    """An audit tile lands anywhere: where the frame is calm, 1 sample looks like 8 by
    PSNR alone, and the sparse values far off must refuse it there too."""
    cheat = WORKLOAD.run(spec | {"samples": 1}, {"frames": [2]}, INPUTS, RunContext(work / "c"))
    honest = load_pixels(rendered["frame2"])
    verdicts = []
    for left in range(0, 121, 10):
        for top in range(0, 91, 10):
            box = (left, top, left + 40, top + 30)
            tile = work / "c" / f"tile-{left}-{top}.png"
            Image.fromarray(crop(honest, box)).save(tile)
            verdicts.append(WORKLOAD.compare_region(spec, tile, cheat, box))
    assert not [v.detail for v in verdicts if v.equal]
    assert any("PSNR" in v.detail and ">= 40 dB" in v.detail for v in verdicts)


def test_merge_zips_every_frame_and_makes_a_video(
    spec: dict[str, Any], rendered: dict[str, Path], work: Path
) -> None:
    plans = WORKLOAD.split(spec)
    outputs = WORKLOAD.merge(
        spec, [(plans[0], rendered["chunk"]), (plans[1], rendered["frame3"])], work / "out"
    )
    with zipfile.ZipFile(outputs[0]) as archive:
        assert archive.namelist() == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    if shutil.which("ffmpeg"):
        assert outputs[1].suffix == ".mp4" and outputs[1].stat().st_size > 1000
    else:
        assert len(outputs) == 1


def test_merge_refuses_a_result_with_the_wrong_frames(
    spec: dict[str, Any], rendered: dict[str, Path], work: Path
) -> None:
    with pytest.raises(InvalidInput, match="frames 1-2"):
        WORKLOAD.merge(spec, [(TaskPlan("frames 1-2", {"frames": [1, 2]}), rendered["frame3"])],
                       work / "bad")  # fmt: skip


def test_validate_refuses_a_file_that_is_not_a_blend(tmp_path: Path) -> None:
    fake = tmp_path / "scene.blend"
    fake.write_bytes(b"PK\x03\x04 not a scene")
    with pytest.raises(InvalidInput, match=r"scene: scene\.blend is not a Blender"):
        WORKLOAD.validate({"frames": "1-2"}, {"scene": fake})


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ("10-3", r"frames: range '10-3' is reversed; the scene has frames 1-24"),
        ("", r"frames: '' names no frame; the scene has frames 1-24"),
        ("20-30", r"frames: '20-30' goes beyond the scene; the scene has frames 1-24"),
    ],
)
def test_validate_refuses_bad_frame_ranges(frames: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        WORKLOAD.validate({"frames": frames}, INPUTS)


def test_runner_prints_one_json_line(
    spec: dict[str, Any], rendered: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "job.json").write_text(json.dumps(spec))
    (tmp_path / "task.json").write_text(json.dumps({"frames": [3]}))
    proc = subprocess.run(
        [
            sys.executable, "-m", "gpudepin.workloads.runner", "--kind", "render",
            "--spec", str(tmp_path / "job.json"), "--task", str(tmp_path / "task.json"),
            "--input", f"scene={INPUTS['scene']}", "--workdir", str(tmp_path / "w"),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [line] = proc.stdout.splitlines()
    answer = json.loads(line)
    assert answer["seconds"] > 0
    assert pixel_hash(Path(answer["result"])) == pixel_hash(rendered["frame3"])


def test_runner_reports_a_failure_as_one_json_line(tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text("{}")
    (tmp_path / "task.json").write_text(json.dumps({"frames": [1]}))
    proc = subprocess.run(
        [
            sys.executable, "-m", "gpudepin.workloads.runner", "--kind", "render",
            "--spec", str(tmp_path / "job.json"), "--task", str(tmp_path / "task.json"),
            "--input", f"scene={tmp_path / 'missing.blend'}", "--workdir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    [line] = proc.stdout.splitlines()
    assert "missing.blend" in json.loads(line)["error"]
    assert "Traceback" not in proc.stdout + proc.stderr
