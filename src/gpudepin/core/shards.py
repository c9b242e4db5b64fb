"""Rules for erasure-coded artifacts on providers' disks: placement, repair, durability.

An artifact cut k-of-n (``gpudepin.storage.erasure``) survives as long as k shards do.
Shards go to n distinct providers spread over operators and regions (``place_shards``),
so one operator's outage or one region's costs as few shards as the pool allows.

**Repair** (``repair_plan``) re-creates every missing shard as soon as the live count
falls to ``k + threshold_margin``, while at least one spare remains: waiting until the
count reached k would leave the artifact one departure from loss during the repair
itself. Storj repairs the same way, above its threshold (market-facts.md).

**Durability** (``durability``) is the chance that fewer than k shards survive one repair
interval, from the churn model in shared/data/market-facts.md: a consumer provider's
session length T is Weibull with shape beta = 0.75 and scale lambda = 96 h, so its
survival function is ``S(t) = exp(-(t / lambda) ** beta)``. The chance one holder leaves
within an interval t depends on what is known of it:

* its session age a is known: ``1 - S(a + t) / S(a)`` (beta < 1 means a falling hazard,
  so old sessions are the safest holders);
* nothing is known (the default): the holder is a random provider online now, whose
  remaining life follows the renewal-theory equilibrium law
  ``F_e(t) = (1 / mu) * integral_0^t S(u) du``, with mean session ``mu = lambda *
  Gamma(1 + 1/beta)``. Substituting ``w = (u / lambda) ** beta`` gives
  ``F_e(t) = P(1/beta, (t / lambda) ** beta)``, the regularised lower incomplete gamma
  function. For t = 1 h this is ~0.9% per holder, close to the observed 1.1
  interruptions per hour per 100 instances.

Holders are taken as independent, which spreading over operators makes reasonable; the
probability that fewer than k of n survive is then a Poisson-binomial tail.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gpudepin.core.errors import InvalidInput, NoMatch, Unavailable
from gpudepin.core.placement import ProviderProfile, spread

HOURS_PER_YEAR = 8_760.0


@dataclass(frozen=True)
class Churn:
    """Weibull session lengths of providers (defaults: consumer GPUs, market-facts.md)."""

    shape: float = 0.75
    scale_h: float = 96.0

    def __post_init__(self) -> None:
        if self.shape <= 0 or self.scale_h <= 0:
            raise InvalidInput("Weibull shape and scale must be positive")

    def survival(self, t_h: float) -> float:
        """The chance a session lasts longer than ``t_h`` hours."""
        return math.exp(-((max(t_h, 0.0) / self.scale_h) ** self.shape))

    def mean_h(self) -> float:
        return self.scale_h * math.gamma(1.0 + 1.0 / self.shape)


CONSUMER_CHURN = Churn()


def _regularised_lower_gamma(s: float, x: float) -> float:
    """P(s, x) by its power series, which converges for every x >= 0."""
    if x <= 0:
        return 0.0
    term = 1.0 / s
    total = term
    n = 0
    while term > total * 1e-16 and n < 100_000:
        n += 1
        term *= x / (s + n)
        total += term
    log_value = s * math.log(x) - x + math.log(total) - math.lgamma(s)
    return min(1.0, math.exp(log_value))


def shard_loss_probability(
    interval_h: float, churn: Churn = CONSUMER_CHURN, age_h: float | None = None
) -> float:
    """The chance one holder leaves within ``interval_h`` hours (rules: module doc)."""
    if interval_h < 0:
        raise InvalidInput(f"interval cannot be negative, got {interval_h} h")
    if age_h is None:
        return _regularised_lower_gamma(
            1.0 / churn.shape, (interval_h / churn.scale_h) ** churn.shape
        )
    if age_h < 0:
        raise InvalidInput(f"session age cannot be negative, got {age_h} h")
    # Ratio of survivals in log space, so very old sessions do not underflow to 0/0.
    a = (age_h / churn.scale_h) ** churn.shape
    b = ((age_h + interval_h) / churn.scale_h) ** churn.shape
    return -math.expm1(a - b)


def fewer_than_k_survive(k: int, loss_probabilities: Sequence[float]) -> float:
    """The chance that fewer than k holders survive, each lost with its own probability."""
    if k < 1:
        raise InvalidInput(f"k must be at least 1, got {k}")
    # alive[j] = chance that exactly j of the holders seen so far survive (Poisson-binomial).
    alive = [1.0]
    for q in loss_probabilities:
        nxt = [0.0] * (len(alive) + 1)
        for j, pr in enumerate(alive):
            nxt[j] += pr * q
            nxt[j + 1] += pr * (1.0 - q)
        alive = nxt
    return min(1.0, sum(alive[:k]))


@dataclass(frozen=True)
class DurabilityEstimate:
    """How likely an artifact is to be lost, per repair interval and per year."""

    k: int
    n: int
    interval_h: float
    shard_loss: float  # mean chance one holder leaves within an interval
    loss_per_interval: float
    loss_per_year: float

    @property
    def nines(self) -> float:
        """Annual durability in nines (e.g. 11.0 for 99.999999999%)."""
        return math.inf if self.loss_per_year <= 0 else -math.log10(self.loss_per_year)


def durability(
    k: int,
    n: int,
    interval_h: float,
    churn: Churn = CONSUMER_CHURN,
    ages_h: Sequence[float] | None = None,
) -> DurabilityEstimate:
    """Estimate an artifact's durability when lost shards are repaired every ``interval_h``.

    ``ages_h`` are the current holders' session ages when known (one per live holder; n
    is then their count); without them every holder is a random provider online now.
    A year is taken as independent intervals, each starting from n repaired shards.
    """
    if not 1 <= k <= n:
        raise InvalidInput(f"need 1 <= k <= n, got k={k}, n={n}")
    if interval_h <= 0:
        raise InvalidInput(f"repair interval must be positive, got {interval_h} h")
    if ages_h is not None and len(ages_h) != n:
        raise InvalidInput(f"{len(ages_h)} holder ages given for n={n}")
    losses = (
        [shard_loss_probability(interval_h, churn, a) for a in ages_h]
        if ages_h is not None
        else [shard_loss_probability(interval_h, churn)] * n
    )
    per_interval = fewer_than_k_survive(k, losses)
    intervals = HOURS_PER_YEAR / interval_h
    per_year = -math.expm1(intervals * math.log1p(-per_interval)) if per_interval < 1 else 1.0
    return DurabilityEstimate(k, n, interval_h, sum(losses) / n, per_interval, per_year)


@dataclass(frozen=True)
class StoredArtifact:
    """Where an artifact's shards live: ``holders[i]`` holds shard i (None: unplaced)."""

    artifact_id: str
    k: int
    n: int
    holders: tuple[str | None, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n or len(self.holders) != self.n:
            raise InvalidInput(
                f"artifact {self.artifact_id}: need 1 <= k <= n and n holders, "
                f"got k={self.k}, n={self.n}, {len(self.holders)} holders"
            )


def place_shards(
    artifact_id: str,
    k: int,
    n: int,
    candidates: Sequence[ProviderProfile],
    rng: random.Random | None = None,
) -> StoredArtifact:
    """Choose n distinct holders for a new artifact, spread over operators and regions."""
    if not 1 <= k <= n:
        raise InvalidInput(f"need 1 <= k <= n, got k={k}, n={n}")
    try:
        chosen = spread(candidates, n, rng)
    except NoMatch as exc:
        raise NoMatch(
            f"{k}-of-{n} storage needs {n} providers offering disk: {exc.message}",
            hint="Use a smaller n, or keep the artifact in the coordinator's blob store.",
        ) from exc
    return StoredArtifact(artifact_id, k, n, tuple(p.address for p in chosen))


def live_shards(
    artifact: StoredArtifact, holders_alive: Collection[str], corrupt: Collection[int] = ()
) -> list[int]:
    """Indexes of shards whose holder is alive and whose last audit found them intact."""
    alive = {h.lower() for h in holders_alive}
    return [
        i
        for i, h in enumerate(artifact.holders)
        if h is not None and h.lower() in alive and i not in corrupt
    ]


def repair_plan(
    artifact: StoredArtifact,
    holders_alive: Collection[str],
    threshold_margin: int = 2,
    corrupt: Collection[int] = (),
) -> list[int]:
    """The shard indexes to re-create now; empty while more than k + margin are live.

    When repair triggers it restores every missing shard, not just enough to clear the
    threshold, so one repair buys the most time. Raises ``Unavailable`` once fewer than k
    are live: the artifact can no longer be rebuilt, and saying so beats a silent no-op.
    """
    if threshold_margin < 1:
        raise InvalidInput(
            f"threshold margin must be at least 1, got {threshold_margin}",
            hint="Repair must start while a spare shard remains, above k.",
        )
    live = live_shards(artifact, holders_alive, corrupt)
    if len(live) < artifact.k:
        raise Unavailable(
            f"artifact {artifact.artifact_id} is lost: {len(live)} of the {artifact.k} "
            "shards needed survive",
            hint="Re-upload it from the buyer's copy if one exists.",
        )
    if len(live) > artifact.k + threshold_margin:
        return []
    kept = set(live)
    return [i for i in range(artifact.n) if i not in kept]


def place_repairs(
    artifact: StoredArtifact,
    indexes: Iterable[int],
    candidates: Sequence[ProviderProfile],
    holders_alive: Collection[str],
    rng: random.Random | None = None,
) -> dict[int, str]:
    """New holders for the shards at ``indexes``, spread around the holders still live.

    No provider that already holds a shard of this artifact gets another one, so a
    repair never concentrates the artifact on fewer machines.
    """
    wanted = sorted(set(indexes))
    by_address: Mapping[str, ProviderProfile] = {p.address.lower(): p for p in candidates}
    live_holders = {artifact.holders[i] for i in live_shards(artifact, holders_alive)}
    placed = [by_address[h.lower()] for h in live_holders if h and h.lower() in by_address]
    holders_any = {h.lower() for h in artifact.holders if h is not None}
    pool = [p for p in candidates if p.address.lower() not in holders_any]
    chosen = spread(pool, len(wanted), rng, placed=placed)
    return {i: p.address for i, p in zip(wanted, chosen, strict=True)}


def fit_code(k: int, n: int, available: int) -> tuple[int, int] | None:
    """The k-of-n to use when only ``available`` providers can hold a shard.

    The configured code when there are enough; else n shrinks to the providers there are
    and k keeps the code rate k/n as near as it can, always leaving at least one spare
    (k < n), so a small network still survives a departure (4-of-8 on 4 disks: 2-of-4).
    None below 2 holders: one holder adds nothing the coordinator's own copy does not.
    """
    if not 1 <= k <= n:
        raise InvalidInput(f"need 1 <= k <= n, got k={k}, n={n}")
    if available >= n:
        return k, n
    if available < 2:
        return None
    return max(1, min(available - 1, round(available * k / n))), available
