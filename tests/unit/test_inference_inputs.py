"""Inference input checks that need no engine: texts, array signatures, row splits."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core.errors import InvalidInput
from gpudepin.workloads.inference import WORKLOAD, TensorSig, check_arrays, read_texts


def test_jsonl_texts_skip_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b", "id": 7}\n', "utf-8")
    assert read_texts(path) == ["a", "b"]


def test_plain_text_keeps_one_text_per_line_and_drops_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes("\ufefffirst\n\nthird\n".encode())
    assert read_texts(path) == ["first", "", "third"]


def test_jsonl_without_text_field_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a"}\n{"body": "b"}\n', "utf-8")
    with pytest.raises(InvalidInput, match='line 2 has no string field "text"'):
        read_texts(path)


def test_broken_json_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a"\n', "utf-8")
    with pytest.raises(InvalidInput, match="line 1 is not valid JSON"):
        read_texts(path)


SIG = [TensorSig("x", "float32", (None, 3)), TensorSig("mask", "int64", (None,))]


def test_matching_arrays_give_their_row_count() -> None:
    rows = check_arrays(SIG, {"x": np.zeros((5, 3), np.float32), "mask": np.zeros(5, np.int64)})
    assert rows == 5


def test_extra_and_missing_arrays_are_both_named() -> None:
    with pytest.raises(InvalidInput, match=r"missing \['mask'\]; unexpected \['y'\]"):
        check_arrays(SIG, {"x": np.zeros((5, 3), np.float32), "y": np.zeros(5)})


@given(rows=st.integers(1, 10_000), batch=st.integers(1, 2_000))
def test_tasks_cover_every_row_once_in_order(rows: int, batch: int) -> None:
    plans = WORKLOAD.split({"rows": rows, "batch_size": batch, "model": "onnx"})
    ranges = [(p.spec["start"], p.spec["end"]) for p in plans]
    assert ranges[0][0] == 0 and ranges[-1][1] == rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert all(0 < end - start <= batch for start, end in ranges)
