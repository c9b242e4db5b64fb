"""Sampled audits: the rows drawn, what they cost, what they catch, and the tolerance table."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core import audit_sampling as AS
from gpudepin.core.errors import InvalidInput


@given(
    start=st.integers(0, 10_000),
    rows=st.integers(1, 5_000),
    seed=st.integers(0, 2**32),
)
def test_a_sample_is_sorted_distinct_inside_the_task_and_replays(
    start: int, rows: int, seed: int
) -> None:
    picked = AS.sample_rows(start, start + rows, random.Random(seed))
    assert list(picked) == sorted(set(picked))
    assert all(start <= r < start + rows for r in picked)
    assert len(picked) == AS.sample_size(rows) >= 1
    assert picked == AS.sample_rows(start, start + rows, random.Random(seed))


def test_sample_size_is_a_share_of_the_rows_with_a_floor_and_a_cap() -> None:
    assert AS.sample_size(1) == 1
    assert AS.sample_size(10) == 1
    assert AS.sample_size(1024) == math.ceil(0.05 * 1024) == 52
    assert AS.sample_size(100_000) == 64
    assert AS.audit_cost(1024) == pytest.approx(52 / 1024)
    with pytest.raises(InvalidInput):
        AS.sample_size(0)
    with pytest.raises(InvalidInput):
        AS.SampleParams(rate=0.0)


@given(rows=st.integers(1, 400), data=st.data())
def test_catch_probability_matches_counting_and_grows_with_the_sample(
    rows: int, data: st.DataObject
) -> None:
    wrong = data.draw(st.integers(0, rows))
    m = data.draw(st.integers(0, rows))
    q = AS.catch_probability(rows, wrong, m)
    exact = 1 - math.comb(rows - wrong, m) / math.comb(rows, m)
    assert q == pytest.approx(exact, abs=1e-9)
    if m < rows:
        assert AS.catch_probability(rows, wrong, m + 1) >= q - 1e-12


def test_a_whole_fake_is_always_caught_and_a_tenth_rarely_escapes() -> None:
    assert AS.catch_probability(1024, 1024, 1) == 1.0
    assert AS.catch_probability(1024, 0, 52) == 0.0
    assert AS.catch_probability(1024, 102, AS.sample_size(1024)) > 0.995


def test_the_tolerance_table_is_exact_within_a_class_and_looser_across() -> None:
    assert AS.tolerance_for("onnx", "cpu", "cpu") == AS.EXACT
    assert AS.tolerance_for("onnx", "cpu", "h100-80g") == AS.CROSS_DEVICE
    same = AS.tolerance_for("all-minilm-l6-v2", "cpu", "cpu")
    cross = AS.tolerance_for("all-minilm-l6-v2", "cpu", "rtx4090")
    assert 0 < same.atol < cross.atol and same.min_cosine > cross.min_cosine
    # a buyer's own tolerance governs across classes; within one the stricter applies
    loose = AS.Tolerance(0.1, 0.1, 0.9)
    assert AS.tolerance_for("onnx", "cpu", "l4", loose) == loose
    assert AS.tolerance_for("onnx", "cpu", "cpu", loose) == AS.EXACT
    # a model without a row is never compared more strictly than across classes
    assert AS.tolerance_for("unknown-model", "cpu", "cpu") == AS.CROSS_DEVICE
