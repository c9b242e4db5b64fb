"""Uptime from compact runs of heartbeats equals uptime from the heartbeats themselves."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core.sla import outages, outages_from_runs

MAX_GAP = 10.0


def runs_of(beats: list[float]) -> list[tuple[float, float]]:
    """How the coordinator folds heartbeats into runs (enterprise.note_alive)."""
    runs: list[list[float]] = []
    for t in sorted(beats):
        if runs and t - runs[-1][1] <= MAX_GAP:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    return [(a, b) for a, b in runs]


@given(
    st.lists(st.floats(0, 500, allow_nan=False), max_size=60),
    st.floats(0, 250),
    st.floats(0, 250),
)
def test_runs_give_the_same_outages_as_heartbeats(beats: list[float], a: float, w: float) -> None:
    start, end = a, a + w
    assert outages_from_runs(runs_of(beats), start, end, MAX_GAP) == outages(
        beats, start, end, MAX_GAP
    )


def test_a_provider_that_never_beat_was_down_all_window() -> None:
    (o,) = outages_from_runs([], 0.0, 100.0, MAX_GAP)
    assert (o.start, o.end) == (0.0, 100.0)
