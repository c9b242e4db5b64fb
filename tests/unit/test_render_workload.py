"""The render workload's pure parts: frame lists, splitting, file checks, pixel verdicts,
merging and the runner's error line. No Blender needed."""

from __future__ import annotations

import gzip
import json
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from gpudepin.core.errors import InvalidInput, Unavailable
from gpudepin.workloads import runner
from gpudepin.workloads.base import TaskPlan
from gpudepin.workloads.blender import blender_binary, check_blend_file
from gpudepin.workloads.images import write_box
from gpudepin.workloads.render import WORKLOAD, is_blank, parse_frames, pick_tile, pixel_hash

SPEC = {"width": 64, "height": 48, "fps": 12, "frames": [1, 2, 3], "chunk": 1}


def _noise(seed: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)


def _png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels, "RGBA").save(path, format="PNG")
    return path


# --- frame lists and splitting -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "frames"),
    [("1-4", [1, 2, 3, 4]), ("5", [5]), ("1-3,7, 9-10", [1, 2, 3, 7, 9, 10]), ("3,1-2", [1, 2, 3])],
)
def test_parse_frames_reads_ranges_and_lists(text: str, frames: list[int]) -> None:
    assert parse_frames(text, 1, 24) == frames


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9-2", "reversed"),
        ("", "names no frame"),
        ("1,,2", "names no frame"),
        ("0-3", "beyond the scene"),
        ("25", "beyond the scene"),
        ("a-b", "cannot read"),
    ],
)
def test_parse_frames_refuses_with_the_scene_range(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=f"{message}.*the scene has frames 1-24"):
        parse_frames(text, 1, 24)


@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 5)), min_size=1, max_size=6))
def test_parsed_frames_are_sorted_unique_and_cover_every_part(
    parts: list[tuple[int, int]],
) -> None:
    text = ",".join(f"{a}-{a + n}" if n else str(a) for a, n in parts)
    frames = parse_frames(text, 1, 55)
    assert frames == sorted(set(frames))
    assert set(frames) == {f for a, n in parts for f in range(a, a + n + 1)}


@given(st.lists(st.integers(1, 500), min_size=1, unique=True), st.integers(1, 7))
def test_split_covers_each_frame_once_in_chunks(frames: list[int], chunk: int) -> None:
    frames.sort()
    plans = WORKLOAD.split({"frames": frames, "chunk": chunk})
    assert [f for plan in plans for f in plan.spec["frames"]] == frames
    assert all(1 <= len(plan.spec["frames"]) <= chunk for plan in plans)
    assert plans[0].label.startswith("frame")


def test_split_labels_read_like_people_write_them() -> None:
    plans = WORKLOAD.split({"frames": [1, 2, 3, 7, 9], "chunk": 3})
    assert [plan.label for plan in plans] == ["frames 1-3", "frames 7,9"]
    assert WORKLOAD.split({"frames": [4], "chunk": 1})[0].label == "frame 4"


@given(st.integers(1, 4000), st.integers(1, 4000), st.integers(0, 2**32))
def test_pick_tile_stays_inside_the_frame(width: int, height: int, seed: int) -> None:
    left, top, right, bottom = pick_tile({"width": width, "height": height}, random.Random(seed))
    assert 0 <= left < right <= width and 0 <= top < bottom <= height


# --- scene files and Blender discovery -------------------------------------------------


def test_blend_magic_accepts_plain_gzip_and_zstd_scenes(tmp_path: Path) -> None:
    plain = tmp_path / "plain.blend"
    plain.write_bytes(b"BLENDER-v304" + bytes(64))
    packed = tmp_path / "packed.blend"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    zstd = tmp_path / "zstd.blend"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(64))
    for path in (plain, packed, zstd):
        check_blend_file(path)


@pytest.mark.parametrize(
    "content", [b"\x89PNG\r\n\x1a\n....", gzip.compress(b"not a scene at all"), b""]
)
def test_blend_magic_refuses_other_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "scene.blend"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=r"not a Blender \.blend file"):
        check_blend_file(path)


def test_missing_blender_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPUDEPIN_BLENDER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Unavailable) as caught:
        blender_binary()
    assert "apt-get install" in caught.value.hint and "GPUDEPIN_BLENDER" in caught.value.hint


def test_a_wrong_blender_path_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUDEPIN_BLENDER", str(tmp_path / "nope"))
    with pytest.raises(Unavailable, match="nope"):
        blender_binary()


@pytest.mark.parametrize(
    ("params", "field"),
    [({"frame": "1-2"}, "unknown render parameter"), ({"format": "EXR"}, "format"),
     ({"chunk": 0}, "chunk"), ({"seed": -1}, "seed"), ({"chunk": True}, "chunk")],
)  # fmt: skip
def test_validate_names_the_bad_parameter(
    tmp_path: Path, params: dict[str, object], field: str
) -> None:
    scene = tmp_path / "s.blend"
    scene.write_bytes(b"BLENDER-v304")
    with pytest.raises(InvalidInput, match=field):
        WORKLOAD.validate(params, {"scene": scene})


# --- pixels and verdicts ---------------------------------------------------------------


def test_pixel_hash_ignores_png_metadata_and_compression(tmp_path: Path) -> None:
    pixels = _noise(1)
    a = _png(tmp_path / "a.png", pixels)
    b = tmp_path / "b.png"
    Image.fromarray(pixels, "RGBA").save(b, compress_level=0)
    write_box(b, (0, 0, 1, 1))
    assert a.read_bytes() != b.read_bytes()
    assert pixel_hash(a) == pixel_hash(b)
    assert pixel_hash(a) != pixel_hash(_png(tmp_path / "c.png", _noise(2)))


def test_is_blank_spots_flat_images_only(tmp_path: Path) -> None:
    flat = np.full((48, 64, 4), (30, 60, 90, 255), dtype=np.uint8)
    assert is_blank(_png(tmp_path / "flat.png", flat))
    assert not is_blank(_png(tmp_path / "noise.png", _noise(3)))


def test_compare_identical_close_and_different(tmp_path: Path) -> None:
    pixels = _noise(4)
    a = _png(tmp_path / "a.png", pixels)
    same = WORKLOAD.compare(SPEC, a, _png(tmp_path / "same.png", pixels.copy()))
    assert same.equal and same.score == 1.0
    nudged = pixels.astype(np.int16)
    nudged[::2] += 2  # tile renders drift by up to 2/255 on some pixels
    close = _png(tmp_path / "close.png", np.clip(nudged, 0, 255).astype(np.uint8))
    verdict = WORKLOAD.compare(SPEC, a, close)
    assert verdict.equal and 0.4 < verdict.score < 1.0, verdict.detail
    other = WORKLOAD.compare(SPEC, a, _png(tmp_path / "other.png", _noise(5)))
    assert not other.equal and other.score < 0.4


def test_compare_finds_a_tiles_region_in_the_full_frame(tmp_path: Path) -> None:
    full = _png(tmp_path / "full.png", _noise(6))
    box = (10, 5, 30, 25)
    tile = _png(tmp_path / "tile.png", _noise(6)[5:25, 10:30])
    write_box(tile, box)
    assert WORKLOAD.compare(SPEC, tile, full).equal
    assert WORKLOAD.compare(SPEC, full, tile).equal
    shifted = _png(tmp_path / "shifted.png", _noise(6)[6:26, 10:30])
    write_box(shifted, box)
    assert not WORKLOAD.compare(SPEC, shifted, full).equal


def test_compare_refuses_sizes_that_do_not_match(tmp_path: Path) -> None:
    a = _png(tmp_path / "a.png", _noise(7))
    b = _png(tmp_path / "b.png", _noise(7, (32, 24)))
    verdict = WORKLOAD.compare(SPEC, a, b)
    assert not verdict.equal and "sizes differ" in verdict.detail


# --- merging ---------------------------------------------------------------------------


def _chunk(path: Path, frames: dict[int, np.ndarray], tmp: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for frame, pixels in frames.items():
            archive.write(_png(tmp / f"m{frame}.png", pixels), f"frame_{frame:04d}.png")
    return path


def test_merge_numbers_frames_from_pngs_and_chunks(tmp_path: Path) -> None:
    plans = [TaskPlan("frames 1-2", {"frames": [1, 2]}), TaskPlan("frame 3", {"frames": [3]})]
    results = [
        (plans[0], _chunk(tmp_path / "c.zip", {1: _noise(1), 2: _noise(2)}, tmp_path)),
        (plans[1], _png(tmp_path / "blob-abc", _noise(3))),
    ]
    outputs = WORKLOAD.merge(SPEC, results, tmp_path / "out")
    with zipfile.ZipFile(outputs[0]) as archive:
        assert archive.namelist() == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
        archive.extract("frame_0003.png", tmp_path / "x")
    assert pixel_hash(tmp_path / "x" / "frame_0003.png") == pixel_hash(tmp_path / "blob-abc")
    assert len(outputs) == (2 if shutil.which("ffmpeg") else 1)


def test_merge_skips_the_video_without_ffmpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    plan = TaskPlan("frame 1", {"frames": [1]})
    outputs = WORKLOAD.merge(SPEC, [(plan, _png(tmp_path / "f.png", _noise(1)))], tmp_path / "o")
    assert [path.name for path in outputs] == ["frames.zip"]


def test_merge_refuses_a_chunk_missing_a_frame(tmp_path: Path) -> None:
    plan = TaskPlan("frames 1-2", {"frames": [1, 2]})
    chunk = _chunk(tmp_path / "c.zip", {1: _noise(1)}, tmp_path)
    with pytest.raises(InvalidInput, match="frames 1-2"):
        WORKLOAD.merge(SPEC, [(plan, chunk)], tmp_path / "out")


# --- runner ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--kind", "render"], "invalid_input"),
        (["--kind", "paint", "--spec", "s", "--task", "t", "--workdir", "w"], "invalid_input"),
    ],
)
def test_runner_turns_bad_arguments_into_one_json_line(
    argv: list[str], code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runner.main(argv) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["code"] == code
