"""The lease SLA rules of ``core.sla``: receipts and probes measured together across a
failover, the published table, and who pays which part of the credit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core.errors import InvalidInput
from gpudepin.core.sla import (
    Holder,
    Probe,
    answerable_for,
    lease_outages,
    lease_sla,
    sla_credit,
    uptime_terms,
)

FEE = 1_000_000


def test_published_table_pays_10_25_and_100_percent() -> None:
    terms = uptime_terms(99.9)
    assert terms.uptime_target == pytest.approx(0.999)
    assert sla_credit(FEE, 0.9995, terms) == 0
    assert sla_credit(FEE, 0.9985, terms) == FEE // 10
    assert sla_credit(FEE, 0.985, terms) == FEE // 4
    assert sla_credit(FEE, 0.90, terms) == FEE
    lower = uptime_terms(99)  # rows above the target are dropped
    assert sla_credit(FEE, 0.995, lower) == 0
    assert sla_credit(FEE, 0.985, lower) == FEE // 4
    with pytest.raises(InvalidInput, match="uptime"):
        uptime_terms(120)


def test_a_failed_probe_is_an_outage_even_while_receipts_come() -> None:
    runs = [(0.0, 1000.0)]
    probes = [Probe(100, True), Probe(200, False), Probe(260, True)]
    (out,) = lease_outages(runs, probes, 0, 1000, max_gap=10)
    assert (out.start, out.end, out.cause) == (200, 260, "probe")


def test_failover_gap_counts_against_the_dead_provider() -> None:
    # a served from 0 and died after its receipt at 400; b was awarded at 430, ran from 450
    runs = [(0.0, 400.0), (450.0, 1000.0)]
    holders = [Holder("a", 0.0), Holder("b", 430.0)]
    sla = lease_sla(runs, [], holders, 0, 1000, 10, FEE, uptime_terms(99.9))
    (out,) = sla.report.outages
    assert (out.start, out.end) == (400, 450)
    assert sla.report.measured_uptime == pytest.approx(0.95)
    assert sla.report.credit == FEE // 4  # 95% is below 99% but not below 95%
    assert sla.answerable == ("a",)
    assert sla.charges == (("a", FEE // 4),)


def test_a_failover_faster_than_max_gap_is_still_an_outage() -> None:
    # a's last receipt at 400; b started 6 s later, inside the 10 s that forgive jitter
    runs = [(0.0, 400.0), (406.0, 1000.0)]
    holders = [Holder("a", 0.0), Holder("b", 404.0)]
    assert lease_sla(runs, [], holders, 0, 1000, 10, FEE, uptime_terms(99.9)).report.outages == ()
    sla = lease_sla(runs, [], holders, 0, 1000, 10, FEE, uptime_terms(99.9), lost_at=[400.0])
    (out,) = sla.report.outages
    assert (out.start, out.end, out.cause) == (400, 406, "failover")
    assert sla.report.measured_uptime == pytest.approx(0.994)
    assert sla.answerable == ("a",) and sla.charges == (("a", FEE // 10),)


def test_a_lost_last_provider_is_down_until_the_window_ends() -> None:
    (out,) = lease_outages([(0.0, 95.0)], [], 0, 100, 10, lost_at=[95.0])
    assert (out.start, out.end) == (95, 100)


def test_no_breach_no_charge() -> None:
    sla = lease_sla([(0.0, 1000.0)], [], [Holder("a", 0)], 0, 1000, 10, FEE, uptime_terms(99.9))
    assert sla.report.outages == () and sla.report.credit == 0 and sla.charges == ()


def test_outages_before_any_holder_cannot_be_attributed_to_nobody() -> None:
    with pytest.raises(InvalidInput):
        answerable_for(lease_outages([], [], 0, 100, 10), [])


spans = st.lists(st.tuples(st.integers(0, 900), st.integers(1, 100)), max_size=6)


@given(
    gaps=spans,
    bad=spans,
    switches=st.lists(st.integers(0, 1000), max_size=3),
    lost=st.lists(st.integers(0, 1000), max_size=3),
    fee=st.integers(0, 10**24),
    target=st.sampled_from([95.0, 99.0, 99.9, 99.99]),
)
def test_charges_sum_to_the_credit_and_never_exceed_the_fee(
    gaps: list[tuple[int, int]],
    bad: list[tuple[int, int]],
    switches: list[int],
    lost: list[int],
    fee: int,
    target: float,
) -> None:
    # receipts everywhere except in the gaps; probes fail over the 'bad' spans
    cuts = sorted((float(a), float(a + d)) for a, d in gaps)
    runs, t = [], 0.0
    for a, b in cuts:
        if a > t:
            runs.append((t, a))
        t = max(t, b)
    if t < 1000:
        runs.append((t, 1000.0))
    probes = [p for a, d in bad for p in (Probe(a, False), Probe(a + d, True))]
    holders = [Holder("p0", 0.0)] + [Holder(f"p{i + 1}", float(s)) for i, s in enumerate(switches)]
    lost_at = [float(t) for t in lost]
    sla = lease_sla(runs, probes, holders, 0, 1000, 5, fee, uptime_terms(target), lost_at)
    assert sum(c for _, c in sla.charges) == sla.report.credit <= fee
    # a lost provider's handover is down until someone delivers again
    for t in lost_at:
        if t < 1000 and not any(a <= t < b for a, b in runs):
            assert any(o.start <= t < o.end for o in sla.report.outages)
    assert 0.0 <= sla.report.measured_uptime <= 1.0
    assert all(0 <= o.start < o.end <= 1000 for o in sla.report.outages)
    assert len(sla.answerable) == len(sla.report.outages)
    if not sla.report.breached:
        assert sla.report.credit == 0
