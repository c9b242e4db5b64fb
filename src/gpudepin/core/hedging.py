"""Tail-latency rules: speculative re-execution of stragglers and hedged requests.

**Stragglers.** A task of class C (e.g. ``render:rtx4090``) that has run longer than
``straggler_multiple`` x the p95 duration of C's recent tasks gets a speculative copy on
another provider. There are at most ``max_copies`` copies, and no copy is made before
the class has ``min_samples`` durations, since a p95 of three samples means little.

**Hedged requests.** For a hosted inference lease running several replicas, a request
not answered by the replicas' p95 latency is sent again to a second replica; the first
answer wins. Google's BigTable test hedged at the p95 for ~5% extra load and cut p99.9
from 1,800 ms to 74 ms (shared/data/market-facts.md).

**Who is paid when copies race** (``race_payouts``). The first *verified* result wins
and its provider earns the whole task fee. Every other copy is cancelled, and:

* a **speculative copy** that loses is paid for the time it ran, at the task's per-second
  rate, capped at the task fee. The network asked for it; it was cancelled through no
  fault of its own. Unpaid, providers would learn to ignore speculative work, and the
  mechanism that protects buyers from stragglers would stop working.
* the **original** copy that loses (it was the straggler that caused the copy) is paid
  nothing. Paying it would reward slowness: a provider could stall on purpose and still
  collect.
* a copy whose result failed verification is paid nothing, whichever it was.

The buyer pays the task's price once, to the winner, as agreed at submission. The
losing copy's time is paid by the network out of its protocol fees
(``ledger.pay_speculation_from_fees``): the network decided to speculate, so it bears the
cost, and when the fees on hand fall short the copy gets what they hold (the event says
so). The cost is bounded: a copy starts only past 1.5 x p95, so at most about 5% of
tasks get one, and it runs only until the race ends. The per-second rate is the task's
price over its class's p95 duration when the copy was made: a copy cancelled after a
typical task's time earns about one task's price, never more.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gpudepin.core.errors import InvalidInput


def quantile(samples: Iterable[float], q: float) -> float:
    """The nearest-rank ``q`` quantile: a value that really occurred, never interpolated."""
    ordered = sorted(samples)
    if not ordered:
        raise InvalidInput("no samples to take a quantile of")
    if not 0.0 < q <= 1.0:
        raise InvalidInput(f"quantile must be in (0, 1], got {q}")
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def p95(samples: Iterable[float]) -> float:
    """The nearest-rank 95th percentile of ``samples``."""
    return quantile(samples, 0.95)


class QuantileWindow:
    """The quantiles of the last ``size`` samples, kept sorted as they stream in.

    A sliding window rather than all history: the p95 that decides what counts as slow
    should follow the network as it is now (new cards, a busy hour). Each ``add`` and
    each query cost O(size) at worst, with size in the hundreds.
    """

    def __init__(self, size: int = 500) -> None:
        if size < 1:
            raise InvalidInput(f"window size must be positive, got {size}")
        self._size = size
        self._arrival: deque[float] = deque()
        self._sorted: list[float] = []

    def add(self, value: float) -> None:
        """Record one sample, forgetting the oldest once the window is full."""
        if len(self._arrival) == self._size:
            old = self._arrival.popleft()
            del self._sorted[bisect_left(self._sorted, old)]
        self._arrival.append(value)
        insort(self._sorted, value)

    def __len__(self) -> int:
        return len(self._arrival)

    def quantile(self, q: float) -> float:
        """The nearest-rank ``q`` quantile of the samples in the window."""
        if not self._sorted:
            raise InvalidInput("no samples to take a quantile of")
        if not 0.0 < q <= 1.0:
            raise InvalidInput(f"quantile must be in (0, 1], got {q}")
        return self._sorted[max(1, math.ceil(q * len(self._sorted))) - 1]

    def p95(self) -> float:
        return self.quantile(0.95)


@dataclass(frozen=True)
class HedgePolicy:
    """Thresholds for speculation and hedging (all configurable)."""

    straggler_multiple: float = 1.5
    min_samples: int = 20
    max_copies: int = 2
    hedge_quantile: float = 0.95
    # copies racing at once: at most this share of the running tasks (but always a few),
    # so that a network slowed down as a whole (overloaded, say) is not loaded further
    # with a copy of every task now "slower than usual"
    max_racing_share: float = 0.05
    min_racing: int = 4
    # no new copies while the coordinator itself answers this late: when its own queue is
    # what makes tasks slow, a copy cannot finish sooner and only adds to the queue
    max_coordinator_lag_s: float = 0.5

    def __post_init__(self) -> None:
        if self.straggler_multiple < 1.0:
            raise InvalidInput(
                f"straggler multiple must be at least 1, got {self.straggler_multiple}",
                hint="Below 1 a copy would start on tasks running at normal speed.",
            )
        if self.max_copies < 1 or self.min_samples < 1:
            raise InvalidInput("max_copies and min_samples must be at least 1")
        if not 0.0 <= self.max_racing_share <= 1.0 or self.min_racing < 0:
            raise InvalidInput(
                f"the racing share must be in [0, 1], got {self.max_racing_share}",
                hint="It caps how many running tasks may have a copy at once.",
            )
        if not 0.0 < self.hedge_quantile <= 1.0:
            raise InvalidInput(f"hedge quantile must be in (0, 1], got {self.hedge_quantile}")


@dataclass(frozen=True)
class RunningTask:
    """A task in flight: its class, when its first copy started, how many copies run."""

    task_id: str
    task_class: str
    started_at: float
    copies: int = 1


def should_speculate(
    elapsed_s: float, class_p95_s: float | None, copies: int, policy: HedgePolicy
) -> bool:
    """Whether a task running for ``elapsed_s`` deserves one more copy now."""
    if class_p95_s is None or copies >= policy.max_copies:
        return False
    return elapsed_s > policy.straggler_multiple * class_p95_s


def keeps_up(coordinator_lag_s: float, policy: HedgePolicy = HedgePolicy()) -> bool:
    """Whether the coordinator answers in time for a copy to help (see ``stragglers``)."""
    return coordinator_lag_s <= policy.max_coordinator_lag_s


def stragglers(
    running: Iterable[RunningTask],
    durations: Mapping[str, QuantileWindow],
    now: float,
    policy: HedgePolicy = HedgePolicy(),
    coordinator_lag_s: float = 0.0,
) -> list[str]:
    """The ids of running tasks to re-execute speculatively, oldest first, within the
    racing budget: ``max_racing_share`` of the running tasks (at least ``min_racing``)
    may race at once, counting those racing already. None while the coordinator lags
    more than ``max_coordinator_lag_s`` behind its requests (overloaded)."""
    if not keeps_up(coordinator_lag_s, policy):
        return []
    tasks = list(running)
    budget = max(policy.min_racing, math.floor(policy.max_racing_share * len(tasks)))
    budget -= sum(1 for t in tasks if t.copies > 1)
    chosen: list[str] = []
    for task in sorted(tasks, key=lambda t: t.started_at):
        if len(chosen) >= budget:
            break
        window = durations.get(task.task_class)
        p = window.p95() if window is not None and len(window) >= policy.min_samples else None
        if should_speculate(now - task.started_at, p, task.copies, policy):
            chosen.append(task.task_id)
    return chosen


def should_hedge(
    elapsed_s: float,
    latency: QuantileWindow,
    sent_to: int,
    replicas: int,
    policy: HedgePolicy = HedgePolicy(),
) -> bool:
    """Whether a request unanswered after ``elapsed_s`` goes to one more replica.

    Only once per request (``sent_to`` < 2 by default ``max_copies``), only when an
    unused replica exists, and only once the latency window holds enough samples.
    """
    if sent_to >= min(policy.max_copies, replicas) or len(latency) < policy.min_samples:
        return False
    return elapsed_s >= latency.quantile(policy.hedge_quantile)


def hedge_after(
    latency: QuantileWindow, policy: HedgePolicy = HedgePolicy(), floor_s: float = 0.25
) -> float:
    """Seconds to wait for the first replica before the request goes to a second one.

    The lease's p95 latency (``policy.hedge_quantile``) once its window holds
    ``min_samples`` answers; until then ``floor_s``, so a new endpoint with a dead or
    stalled replica is still covered from its first request.
    """
    if floor_s <= 0:
        raise InvalidInput(f"hedge floor must be positive, got {floor_s}")
    if len(latency) < policy.min_samples:
        return floor_s
    return latency.quantile(policy.hedge_quantile)


def hedge_target(replicas: Sequence[str], tried: Iterable[str]) -> str | None:
    """The first replica (in the caller's preference order) not yet sent this request."""
    used = set(tried)
    return next((r for r in replicas if r not in used), None)


@dataclass(frozen=True)
class RaceCopy:
    """One copy of a raced task, as the coordinator saw it."""

    provider: str
    started_at: float
    speculative: bool
    verified: bool = True  # False when its result came back and failed verification


def race_payouts(
    copies: Sequence[RaceCopy],
    winner: str,
    task_fee: int,
    rate_per_s: int,
    cancelled_at: float,
) -> dict[str, int]:
    """What each copy's provider earns once ``winner`` delivered the first verified result.

    Follows the rule in the module docstring. ``rate_per_s`` is in base units per second
    and ``cancelled_at`` is when the losers were told to stop. Amounts are whole base
    units, rounded down.
    """
    if task_fee < 0 or rate_per_s < 0:
        raise InvalidInput("task fee and rate cannot be negative")
    if winner not in {c.provider for c in copies}:
        raise InvalidInput(f"winner {winner} ran no copy of this task")
    pay: dict[str, int] = {}
    for c in copies:
        if c.provider == winner:
            if not c.verified:
                raise InvalidInput(f"winner {winner}'s result failed verification")
            pay[c.provider] = task_fee
        elif c.speculative and c.verified:
            ran_ms = max(0, int((cancelled_at - c.started_at) * 1000))
            pay[c.provider] = min(task_fee, rate_per_s * ran_ms // 1000)
        else:
            pay[c.provider] = 0
    return pay
