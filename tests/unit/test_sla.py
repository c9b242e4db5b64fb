from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core import ledger
from gpudepin.core.errors import InvalidInput
from gpudepin.core.money import UNIT
from gpudepin.core.sla import (
    CreditTier,
    Outage,
    Probe,
    SlaTerms,
    deadline_credit,
    outage_costs,
    outages,
    sla_credit,
    sla_report,
    uptime,
)

HOUR = 3600.0


def beats(start: float, end: float, every: float, skip: tuple[tuple[float, float], ...] = ()):
    """Heartbeats every ``every`` seconds, none inside the ``skip`` spans."""
    t, out = start, []
    while t <= end:
        if not any(a < t < b for a, b in skip):
            out.append(t)
        t += every
    return out


def test_steady_heartbeats_mean_full_uptime() -> None:
    hb = beats(0, 1000, 10)
    assert outages(hb, 0, 1000, max_gap=30) == []
    assert uptime(hb, 0, 1000, max_gap=30) == 1.0


def test_gap_counts_from_last_proof_of_life_to_the_next() -> None:
    hb = beats(0, 1000, 10, skip=((100, 200),))
    assert outages(hb, 0, 1000, max_gap=30) == [Outage(100, 200, "heartbeat")]
    assert uptime(hb, 0, 1000, max_gap=30) == pytest.approx(0.9)


def test_one_missed_heartbeat_is_forgiven_by_max_gap() -> None:
    hb = beats(0, 1000, 10, skip=((495, 505),))
    assert outages(hb, 0, 1000, max_gap=30) == []


def test_silence_at_the_end_and_before_first_beat_is_down() -> None:
    hb = beats(50, 900, 10)
    assert outages(hb, 0, 1000, max_gap=30) == [
        Outage(0, 50, "heartbeat"),
        Outage(900, 1000, "heartbeat"),
    ]


def test_beat_before_the_window_counts_as_proof_at_its_start() -> None:
    hb = [-5.0, *beats(10, 1000, 10)]
    assert outages(hb, 0, 1000, max_gap=30) == []
    assert outages([-500.0, 40.0, *beats(50, 1000, 10)], 0, 1000, 30) == [
        Outage(0, 40, "heartbeat")
    ]


def test_failed_probe_is_down_until_a_probe_succeeds_even_with_heartbeats() -> None:
    hb = beats(0, 1000, 10)
    probes = [Probe(300, True), Probe(360, False), Probe(420, False), Probe(480, True)]
    assert outages(hb, 0, 1000, 30, probes) == [Outage(360, 480, "probe")]
    assert uptime(hb, 0, 1000, 30, probes) == pytest.approx(0.88)


def test_overlapping_heartbeat_and_probe_outages_merge() -> None:
    hb = beats(0, 1000, 10, skip=((100, 200),))
    probes = [Probe(150, False), Probe(250, True)]
    assert outages(hb, 0, 1000, 30, probes) == [Outage(100, 250, "heartbeat+probe")]


@given(st.lists(st.tuples(st.integers(1, 10), st.integers(1, 5)), max_size=6))
def test_uptime_matches_the_known_gaps(layout: list[tuple[int, int]]) -> None:
    # Heartbeats every 10 s; a gap of w+3 slots (>= 40 s) beats max_gap 30, and gaps are
    # apart by at least one beat, so each is exactly one outage of known span.
    gaps, at = [], 0
    for spacing, width in layout:
        a = at + spacing
        b = a + width + 3
        gaps.append((a * 10.0, b * 10.0))
        at = b
    end = (at + 5) * 10.0
    hb = beats(0, end, 10, skip=tuple(gaps))
    assert outages(hb, 0, end, 30) == [Outage(a, b, "heartbeat") for a, b in gaps]
    down = sum(b - a for a, b in gaps)
    assert uptime(hb, 0, end, 30) == pytest.approx(1 - down / end)


def test_window_is_checked() -> None:
    with pytest.raises(InvalidInput):
        outages([], 10, 0, 30)
    with pytest.raises(InvalidInput):
        outages([], 0, 10, 0)


def test_default_credit_table() -> None:
    terms = SlaTerms()
    fee = 1000 * UNIT
    assert sla_credit(fee, 1.0, terms) == 0
    assert sla_credit(fee, 0.9995, terms) == 0
    assert sla_credit(fee, 0.9985, terms) == fee // 10
    assert sla_credit(fee, 0.985, terms) == fee // 4
    assert sla_credit(fee, 0.94, terms) == fee


@given(
    fee=st.integers(0, 10**24),
    a=st.floats(0, 1),
    b=st.floats(0, 1),
)
def test_credit_never_falls_as_uptime_falls(fee: int, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    terms = SlaTerms()
    assert sla_credit(fee, lo, terms) >= sla_credit(fee, hi, terms)
    assert 0 <= sla_credit(fee, lo, terms) <= fee


def test_credit_table_is_configurable_and_validated() -> None:
    terms = SlaTerms(uptime_target=0.99, credit_table=(CreditTier(0.99, 500),))
    assert sla_credit(10_000, 0.98, terms) == 500
    with pytest.raises(InvalidInput):
        SlaTerms(credit_table=(CreditTier(0.99, 1000), CreditTier(0.999, 2500)))
    with pytest.raises(InvalidInput):
        SlaTerms(uptime_target=0.99, credit_table=(CreditTier(0.999, 1000),))
    with pytest.raises(InvalidInput):
        SlaTerms(credit_table=(CreditTier(0.99, 20_000),))


def test_deadline_credit_grows_with_lateness() -> None:
    terms = SlaTerms(deadline_s=1000)
    fee = 100 * UNIT
    assert deadline_credit(fee, 0, 999, terms) == 0
    assert deadline_credit(fee, 0, 1050, terms) == fee // 10
    assert deadline_credit(fee, 0, 1200, terms) == fee // 4
    assert deadline_credit(fee, 0, 1600, terms) == fee
    assert deadline_credit(fee, 0, 10**6, SlaTerms()) == 0


def test_outage_costs_split_the_credit_exactly_by_duration() -> None:
    found = [Outage(0, 10), Outage(20, 50)]
    assert outage_costs(100, found) == [25, 75]
    parts = outage_costs(7, [Outage(0, 1), Outage(1, 2), Outage(2, 3)])
    assert sum(parts) == 7 and max(parts) - min(parts) <= 1


def test_report_then_credit_from_stake_leaves_ledger_balanced() -> None:
    provider, buyer = "0xPROV", "0xBUY"
    book = ledger.InMemoryLedger()
    book.apply(ledger.deposit(buyer, 500 * UNIT))
    book.apply(ledger.deposit(provider, 300 * UNIT))
    book.apply(ledger.stake(book.balances, provider, 300 * UNIT))
    hb = beats(0, 10 * HOUR, 10, skip=((HOUR, 2 * HOUR),))  # 1 h of 10 h down
    report = sla_report(hb, 0, 10 * HOUR, 30, fee_paid=100 * UNIT, terms=SlaTerms())
    assert report.breached and report.credit == 100 * UNIT  # 90% < 95%: the whole fee
    assert sum(report.outage_costs) == report.credit
    book.apply(
        ledger.sla_credit_from_stake(book.balances, provider, buyer, report.credit, "lease-1")
    )
    assert ledger.imbalances(book.balances) == []
    assert book.balance(ledger.available_account(buyer)) == 600 * UNIT
    assert book.balance(ledger.stake_account(provider)) == 200 * UNIT


def test_credit_larger_than_stake_takes_what_is_there() -> None:
    balances = {ledger.stake_account("0xp"): 5, ledger.WORLD: -5}
    txn = ledger.sla_credit_from_stake(balances, "0xP", "0xb", 8)
    assert txn is not None
    assert txn.postings[-1] == ledger.Posting(ledger.available_account("0xb"), 5)
    assert "of 8" in txn.memo
    assert ledger.sla_credit_from_stake({}, "0xP", "0xb", 8) is None


def test_unbonding_does_not_escape_a_credit() -> None:
    book = ledger.InMemoryLedger()
    book.apply(ledger.deposit("0xp", 100))
    book.apply(ledger.stake(book.balances, "0xp", 100))
    book.apply(ledger.unbond(book.balances, "0xp", 70))
    book.apply(ledger.sla_credit_from_stake(book.balances, "0xp", "0xb", 50, "lease-2"))
    assert book.balance(ledger.stake_account("0xp")) == 0
    assert book.balance(ledger.unbonding_account("0xp")) == 50
    assert book.balance(ledger.available_account("0xb")) == 50
    assert ledger.imbalances(book.balances) == []
