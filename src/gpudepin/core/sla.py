"""Service levels: measured uptime, outages, and the credits a breach pays automatically.

Uptime is measured from evidence, never from a provider's say-so:

* **Heartbeats** (already signature-checked by the coordinator) prove the provider's host
  was alive at an instant. A gap between two proofs of life longer than ``max_gap`` is an
  outage that runs *from the last proof of life to the next one*. The buyer cannot see
  inside the provider, so the doubt about when in that gap the failure began goes to the
  buyer; ``max_gap`` (two or three heartbeat periods) only forgives jitter and one lost
  packet.
* **Coordinator probes** test the service itself (e.g. the lease's endpoint). A failed
  probe opens an outage at the probe's time that lasts until the next *successful probe*:
  heartbeats do not close it, because a live host with a dead endpoint is still an outage.

Both kinds of outage are merged and clipped to the measured window. Time before the first
evidence counts as down once it exceeds ``max_gap``, so measuring a provider over a fixed
30-day window makes a newcomer earn the enterprise tier by 30 days of service.

Credits follow a published table like the cloud SLAs: a share of the fee paid, chosen by
the worst row whose threshold the measured uptime falls below. The defaults pay 10% of
the fee below 99.9%, 25% below 99% and 100% below 95%. Batch jobs get the same idea by
lateness against their completion deadline. The money itself moves through
``ledger.sla_credit_from_stake``, from the provider's stake to the buyer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from gpudepin.core.errors import InvalidInput

BPS = 10_000


@dataclass(frozen=True)
class Outage:
    """A span of time in which the service was down, and what proved it."""

    start: float
    end: float
    cause: str = "heartbeat"  # "heartbeat", "probe", "failover", or joined by "+" once merged

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Probe:
    """One coordinator probe of the service: when, and whether it answered correctly."""

    at: float
    ok: bool


@dataclass(frozen=True)
class CreditTier:
    """Below ``below`` measured uptime (a fraction), credit ``credit_bps`` of the fee."""

    below: float
    credit_bps: int


@dataclass(frozen=True)
class DeadlineTier:
    """Late by more than ``over_by`` x the allowed duration: credit ``credit_bps``."""

    over_by: float
    credit_bps: int


DEFAULT_CREDIT_TABLE: tuple[CreditTier, ...] = (
    CreditTier(0.999, 1_000),
    CreditTier(0.99, 2_500),
    CreditTier(0.95, 10_000),
)
DEFAULT_DEADLINE_TABLE: tuple[DeadlineTier, ...] = (
    DeadlineTier(0.0, 1_000),
    DeadlineTier(0.10, 2_500),
    DeadlineTier(0.50, 10_000),
)


@dataclass(frozen=True)
class SlaTerms:
    """The contract a job or lease of the enterprise tier carries.

    ``uptime_target`` applies to leases; ``deadline_s`` (seconds allowed from submission to
    completion) to batch jobs and is None for leases. Every credit row must sit at or
    below the target, so no credit is ever owed without a breach.
    """

    uptime_target: float = 0.999
    credit_table: tuple[CreditTier, ...] = DEFAULT_CREDIT_TABLE
    deadline_s: float | None = None
    deadline_table: tuple[DeadlineTier, ...] = field(default=DEFAULT_DEADLINE_TABLE)

    def __post_init__(self) -> None:
        if not 0.0 < self.uptime_target <= 1.0:
            raise InvalidInput(
                f"uptime target must be in (0, 1], got {self.uptime_target}",
                hint="Write 0.999 for 99.9%.",
            )
        _check_table(
            [(t.below, t.credit_bps) for t in self.credit_table], descending=True, what="uptime"
        )
        for tier in self.credit_table:
            if tier.below > self.uptime_target:
                raise InvalidInput(
                    f"credit row below {tier.below} sits above the target {self.uptime_target}",
                    hint="A credit is owed only on a breach: keep each row at or below the target.",
                )
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise InvalidInput(f"deadline must be positive, got {self.deadline_s} s")
        _check_table(
            [(t.over_by, t.credit_bps) for t in self.deadline_table],
            descending=False,
            what="deadline",
        )
        if any(t.over_by < 0 for t in self.deadline_table):
            raise InvalidInput("a deadline row cannot credit early completion")

    def breached(self, measured_uptime: float) -> bool:
        """Whether ``measured_uptime`` misses the target."""
        return measured_uptime < self.uptime_target


def _check_table(rows: list[tuple[float, int]], *, descending: bool, what: str) -> None:
    """Thresholds strictly ordered and credits rising with severity, each in (0, 100%]."""
    for _, bps in rows:
        if not 0 < bps <= BPS:
            raise InvalidInput(
                f"{what} credit must be in (0, {BPS}] basis points, got {bps}",
                hint="1000 basis points is 10% of the fee.",
            )
    for (t1, c1), (t2, c2) in pairwise(rows):
        ordered = t2 < t1 if descending else t2 > t1
        if not ordered or c2 < c1:
            raise InvalidInput(
                f"{what} credit table out of order at {t1} -> {t2}",
                hint="List rows from the mildest breach to the worst, credits rising.",
            )


def _merge(spans: Iterable[Outage]) -> list[Outage]:
    merged: list[Outage] = []
    for span in sorted(spans, key=lambda o: (o.start, o.end)):
        if merged and span.start <= merged[-1].end:
            last = merged[-1]
            cause = last.cause if span.cause in last.cause else f"{last.cause}+{span.cause}"
            merged[-1] = Outage(last.start, max(last.end, span.end), cause)
        else:
            merged.append(span)
    return merged


def _check_window(start: float, end: float, max_gap: float) -> None:
    if end < start:
        raise InvalidInput(f"window ends ({end}) before it starts ({start})")
    if max_gap <= 0:
        raise InvalidInput(
            f"max_gap must be positive, got {max_gap}",
            hint="Use two or three heartbeat periods.",
        )


def _heartbeat_outages(
    heartbeat_times: Iterable[float], start: float, end: float, max_gap: float
) -> list[Outage]:
    beats = sorted(heartbeat_times)
    before = [t for t in beats if t <= start]
    # The last proof of life before the window decides whether the window opens down.
    points = [before[-1] if before else start]
    points += [t for t in beats if start < t < end]
    points.append(end)
    spans = []
    for prev, nxt in pairwise(points):
        if nxt - prev > max_gap:
            spans.append(Outage(max(prev, start), nxt, "heartbeat"))
    return spans


def _probe_outages(probes: Iterable[Probe], start: float, end: float) -> list[Outage]:
    spans = []
    down_since: float | None = None
    for probe in sorted(probes, key=lambda p: p.at):
        if probe.at >= end:
            break
        if not probe.ok and down_since is None:
            down_since = probe.at
        elif probe.ok and down_since is not None:
            if probe.at > start:
                spans.append(Outage(max(down_since, start), probe.at, "probe"))
            down_since = None
    if down_since is not None:
        spans.append(Outage(max(down_since, start), end, "probe"))
    return spans


def outages(
    heartbeat_times: Iterable[float],
    start: float,
    end: float,
    max_gap: float,
    probes: Iterable[Probe] = (),
) -> list[Outage]:
    """Every outage inside ``[start, end]``, merged and in time order (rules: module doc)."""
    _check_window(start, end, max_gap)
    spans = _heartbeat_outages(heartbeat_times, start, end, max_gap)
    spans += _probe_outages(probes, start, end)
    return [o for o in _merge(spans) if o.end > o.start]


def uptime(
    heartbeat_times: Iterable[float],
    start: float,
    end: float,
    max_gap: float,
    probes: Iterable[Probe] = (),
) -> float:
    """The share of ``[start, end]`` without an outage; an empty window counts as 1.0."""
    return _share_up(outages(heartbeat_times, start, end, max_gap, probes), start, end)


def _share_up(found: Sequence[Outage], start: float, end: float) -> float:
    if end == start:
        return 1.0
    down = sum(o.duration for o in found)
    return max(0.0, 1.0 - down / (end - start))


def _check_fee(fee_paid: int) -> None:
    if fee_paid < 0:
        raise InvalidInput(f"fee paid cannot be negative, got {fee_paid}")


def credit_bps(measured_uptime: float, terms: SlaTerms) -> int:
    """The share of the fee (basis points) that ``measured_uptime`` earns the buyer."""
    if not 0.0 <= measured_uptime <= 1.0:
        raise InvalidInput(f"uptime must be a fraction in [0, 1], got {measured_uptime}")
    if not terms.breached(measured_uptime):
        return 0
    owed = 0
    for tier in terms.credit_table:
        if measured_uptime < tier.below:
            owed = tier.credit_bps
    return owed


def sla_credit(fee_paid: int, measured_uptime: float, terms: SlaTerms) -> int:
    """The credit in base units a lease's buyer is owed, rounded down."""
    _check_fee(fee_paid)
    return fee_paid * credit_bps(measured_uptime, terms) // BPS


def deadline_credit(fee_paid: int, submitted_at: float, finished_at: float, terms: SlaTerms) -> int:
    """The credit in base units a batch job's buyer is owed for finishing late.

    ``finished_at`` is when the job completed, or ``now`` while it still runs (the credit
    then grows as the job stays late). Lateness is measured against ``terms.deadline_s``
    and graded by how far past it the job ran, as a share of the time allowed.
    """
    _check_fee(fee_paid)
    if terms.deadline_s is None:
        return 0
    late = finished_at - (submitted_at + terms.deadline_s)
    if late <= 0:
        return 0
    owed = 0
    for tier in terms.deadline_table:
        if late > tier.over_by * terms.deadline_s:
            owed = tier.credit_bps
    return fee_paid * owed // BPS


def outage_costs(credit: int, found: Sequence[Outage]) -> list[int]:
    """Split ``credit`` over ``found`` outages by duration; the parts sum to ``credit``.

    This lets ``lease sla`` show what each outage cost. Largest-remainder rounding keeps
    the split exact in integer base units.
    """
    total = sum(o.duration for o in found)
    if credit <= 0 or total <= 0:
        return [0 for _ in found]
    # Durations are floats; scale to microseconds so the split is done in integers.
    weights = [round(o.duration * 1_000_000) for o in found]
    wsum = sum(weights) or 1
    parts = [credit * w // wsum for w in weights]
    rest = credit - sum(parts)
    order = sorted(range(len(found)), key=lambda i: (credit * weights[i]) % wsum, reverse=True)
    for i in order[:rest]:
        parts[i] += 1
    return parts


@dataclass(frozen=True)
class SlaReport:
    """What ``gpudepin lease sla ID`` shows: measurement, outages, and who pays whom."""

    start: float
    end: float
    measured_uptime: float
    target: float
    breached: bool
    outages: tuple[Outage, ...]
    outage_costs: tuple[int, ...]
    fee_paid: int
    credit: int


def sla_report(
    heartbeat_times: Iterable[float],
    start: float,
    end: float,
    max_gap: float,
    fee_paid: int,
    terms: SlaTerms,
    probes: Iterable[Probe] = (),
) -> SlaReport:
    """Measure a lease over ``[start, end]`` and price its breach, if any."""
    found = outages(heartbeat_times, start, end, max_gap, probes)
    measured = _share_up(found, start, end)
    credit = sla_credit(fee_paid, measured, terms)
    return SlaReport(
        start=start,
        end=end,
        measured_uptime=measured,
        target=terms.uptime_target,
        breached=terms.breached(measured),
        outages=tuple(found),
        outage_costs=tuple(outage_costs(credit, found)),
        fee_paid=fee_paid,
        credit=credit,
    )


def outages_from_runs(
    runs: Iterable[tuple[float, float]], start: float, end: float, max_gap: float
) -> list[Outage]:
    """Outages inside ``[start, end]`` from runs of proof of life.

    A run ``(first, last)`` stands for heartbeats from ``first`` to ``last`` none more
    than ``max_gap`` apart, which is how the coordinator stores them compactly. The
    result equals ``outages`` over the heartbeats that formed the runs.
    """
    _check_window(start, end, max_gap)
    spans = []
    ordered = sorted(runs)
    before = [last for first, last in ordered if first <= start]
    prev = max(before) if before else start
    for first, last in ordered:
        if last < start or first <= start:
            continue
        if first >= end:
            break
        if first - prev > max_gap:
            spans.append(Outage(max(prev, start), first, "heartbeat"))
        prev = max(prev, last)
    if end - prev > max_gap:
        spans.append(Outage(max(prev, start), end, "heartbeat"))
    return [o for o in _merge(spans) if o.end > o.start]


def uptime_from_runs(
    runs: Iterable[tuple[float, float]], start: float, end: float, max_gap: float
) -> float:
    """The share of ``[start, end]`` without an outage, measured from runs of heartbeats."""
    return _share_up(outages_from_runs(runs, start, end, max_gap), start, end)


# ---- leases: receipts and probes, across failovers ----------------------------------------


@dataclass(frozen=True)
class Holder:
    """A provider that held a lease from ``since`` (its award) until the next holder's."""

    provider: str
    since: float


@dataclass(frozen=True)
class LeaseSla:
    """A lease's SLA report plus who answers for each outage and what each provider owes."""

    report: SlaReport
    answerable: tuple[str, ...]  # per outage, the provider it counts against
    charges: tuple[tuple[str, int], ...]  # (provider, base units), providers sorted


def _handover_outages(
    runs: Iterable[tuple[float, float]], lost_at: Iterable[float], start: float, end: float
) -> list[Outage]:
    # max_gap forgives jitter between one provider's receipts; a lost provider delivered
    # nothing after its last one, so the handover to its successor is down however short
    runs = list(runs)
    spans = []
    for t in lost_at:
        if any(first <= t < last for first, last in runs):
            continue  # someone else was delivering when it stopped
        resumed = min((first for first, _ in runs if first > t), default=end)
        spans.append(Outage(max(t, start), min(resumed, end), "failover"))
    return spans


def lease_outages(
    runs: Iterable[tuple[float, float]],
    probes: Iterable[Probe],
    start: float,
    end: float,
    max_gap: float,
    lost_at: Iterable[float] = (),
) -> list[Outage]:
    """Outages of a lease: gaps in its runs of usage receipts merged with failed probes.

    Receipts (signed by the provider every second or so) play the heartbeats' part; a
    failed probe of the endpoint opens an outage even while receipts keep coming.
    ``lost_at`` holds the last receipt of each provider that lost the lease: from there
    to the next delivery is an outage even when it is shorter than ``max_gap``.
    """
    runs = list(runs)
    spans = (
        outages_from_runs(runs, start, end, max_gap)
        + _probe_outages(probes, start, end)
        + _handover_outages(runs, lost_at, start, end)
    )
    return [o for o in _merge(spans) if o.end > o.start]


def answerable_for(found: Sequence[Outage], holders: Sequence[Holder]) -> list[str]:
    """The provider each outage counts against: the one holding the lease when it began.

    After a failover the gap between the dead provider's last receipt and the new
    provider's start began on the dead provider's watch, so it is charged there.
    """
    if not holders:
        raise InvalidInput("a lease with outages must have had a provider")
    ordered = sorted(holders, key=lambda h: h.since)
    out = []
    for outage in found:
        who = ordered[0].provider
        for holder in ordered[1:]:
            if holder.since > outage.start:
                break
            who = holder.provider
        out.append(who)
    return out


def lease_sla(
    runs: Iterable[tuple[float, float]],
    probes: Iterable[Probe],
    holders: Sequence[Holder],
    start: float,
    end: float,
    max_gap: float,
    fee_paid: int,
    terms: SlaTerms,
    lost_at: Iterable[float] = (),
) -> LeaseSla:
    """Measure a lease over ``[start, end]``, price its breach and split the credit.

    The credit follows the published table on the uptime of the whole lease (the buyer
    bought one service, however many providers delivered it); each provider pays the
    share of the credit that its outages' durations make up. ``lost_at`` is as in
    ``lease_outages``.
    """
    found = lease_outages(runs, probes, start, end, max_gap, lost_at)
    measured = _share_up(found, start, end)
    credit = sla_credit(fee_paid, measured, terms)
    costs = outage_costs(credit, found)
    who = answerable_for(found, holders) if found else []
    owed: dict[str, int] = {}
    for provider, cost in zip(who, costs, strict=True):
        if cost > 0:
            owed[provider] = owed.get(provider, 0) + cost
    report = SlaReport(
        start=start,
        end=end,
        measured_uptime=measured,
        target=terms.uptime_target,
        breached=terms.breached(measured),
        outages=tuple(found),
        outage_costs=tuple(costs),
        fee_paid=fee_paid,
        credit=credit,
    )
    return LeaseSla(report, tuple(who), tuple(sorted(owed.items())))


def uptime_terms(percent: float) -> SlaTerms:
    """Lease terms for an uptime target given in percent (``99.9``), with the default table.

    Table rows above a lower target are dropped, so a 99% lease credits 25% below 99%
    and 100% below 95% but nothing at 99.5%.
    """
    if not 0.0 < percent <= 100.0:
        raise InvalidInput(
            f"uptime: expected a percentage in (0, 100], got {percent}",
            hint="Write 99.9 for 99.9%.",
            field="uptime",
        )
    # rounded so that 99.9 gives exactly the table's 0.999, not 0.9990000000000001
    return target_terms(round(percent / 100, 12))


def target_terms(target: float) -> SlaTerms:
    """Lease terms for an uptime target given as a fraction, with the default table."""
    table = tuple(t for t in DEFAULT_CREDIT_TABLE if t.below <= target)
    return SlaTerms(uptime_target=target, credit_table=table)
