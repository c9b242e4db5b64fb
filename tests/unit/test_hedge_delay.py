"""When the gateway hedges a request to a second replica (``core.hedging.hedge_after``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core.errors import InvalidInput
from gpudepin.core.hedging import HedgePolicy, QuantileWindow, hedge_after, p95


def test_a_new_endpoint_hedges_after_the_floor() -> None:
    w = QuantileWindow()
    assert hedge_after(w, floor_s=0.3) == 0.3
    for _ in range(19):
        w.add(5.0)
    assert hedge_after(w, floor_s=0.3) == 0.3  # 19 samples: not enough history yet
    w.add(5.0)
    assert hedge_after(w, floor_s=0.3) == 5.0
    with pytest.raises(InvalidInput):
        hedge_after(w, floor_s=0)


@given(st.lists(st.floats(0.001, 60), min_size=20, max_size=300))
def test_with_history_it_hedges_at_the_p95_of_the_window(samples: list[float]) -> None:
    w = QuantileWindow(500)
    for s in samples:
        w.add(s)
    after = hedge_after(w, HedgePolicy(), floor_s=0.25)
    assert after == p95(samples)
    # by construction at most 5% of past requests would have been hedged
    assert sum(s > after for s in samples) <= 0.05 * len(samples)
