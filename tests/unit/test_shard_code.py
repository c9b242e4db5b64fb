"""The erasure code a network with few disks falls back to."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core.errors import InvalidInput
from gpudepin.core.shards import fit_code


def test_enough_disks_keep_the_configured_code_and_few_shrink_it() -> None:
    assert fit_code(4, 8, 20) == (4, 8)
    assert fit_code(4, 8, 4) == (2, 4)
    assert fit_code(2, 3, 2) == (1, 2)
    assert fit_code(4, 8, 1) is None
    with pytest.raises(InvalidInput):
        fit_code(5, 4, 10)


@given(st.integers(1, 64), st.integers(0, 64), st.integers(0, 200))
def test_a_fitted_code_fits_the_disks_and_survives_a_departure(
    k: int, extra: int, disks: int
) -> None:
    n = k + extra
    fitted = fit_code(k, n, disks)
    if disks < min(n, 2):
        assert fitted is None
        return
    assert fitted is not None
    k2, n2 = fitted
    assert 1 <= k2 <= n2 <= min(n, disks)
    assert (k2, n2) == (k, n) or k2 < n2
