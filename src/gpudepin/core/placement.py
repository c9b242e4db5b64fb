"""Where work may run: data residency, enterprise eligibility, and spreading replicas.

A buyer restricts placement by region allow-list and deny-list and by jurisdiction tags
(``eu``, ``gdpr``, ``us``, ``apac`` ...), which the region table below derives from a
provider's declared region. A provider that declares no known region matches no
restriction: unknown places are never assumed to be safe ones.

The enterprise tier admits only providers that passed the hardware proof, hold the tier's
stake and kept the tier's uptime over the last 30 days (measured by ``core.sla`` over the
full window, so time before a provider joined counts as down). Every check returns the
reasons a provider fails, so a job nobody can take says why.

``spread`` picks providers for N replicas (or N shards) so that no operator and no region
carries more of them than it must: losing one operator or one region then loses as few
copies as the candidate pool allows.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gpudepin.core.errors import InvalidInput, NoMatch
from gpudepin.core.hardware import CATALOG, Tier
from gpudepin.core.money import UNIT, format_amount

REGION_TAGS: dict[str, frozenset[str]] = {
    "eu-west": frozenset({"eu", "gdpr"}),
    "eu-central": frozenset({"eu", "gdpr"}),
    "eu-north": frozenset({"eu", "gdpr"}),
    "eu-south": frozenset({"eu", "gdpr"}),
    # The UK keeps the GDPR in its own law (UK GDPR) but is not in the EU.
    "uk-south": frozenset({"uk", "gdpr"}),
    "us-east": frozenset({"us"}),
    "us-central": frozenset({"us"}),
    "us-west": frozenset({"us"}),
    "ca-central": frozenset({"ca"}),
    "sa-east": frozenset({"latam"}),
    "ap-south": frozenset({"apac"}),
    "ap-southeast": frozenset({"apac"}),
    "ap-northeast": frozenset({"apac"}),
    "me-central": frozenset({"mena"}),
    "af-south": frozenset({"africa"}),
}


@dataclass(frozen=True)
class Residency:
    """A buyer's placement restrictions; empty sets restrict nothing."""

    allow_regions: frozenset[str] = frozenset()
    deny_regions: frozenset[str] = frozenset()
    require_tags: frozenset[str] = frozenset()  # every tag must hold
    deny_tags: frozenset[str] = frozenset()  # no tag may hold

    @property
    def unrestricted(self) -> bool:
        return not (self.allow_regions or self.deny_regions or self.require_tags or self.deny_tags)


def parse_residency(
    allow: Iterable[str] = (),
    deny: Iterable[str] = (),
    require_tags: Iterable[str] = (),
    deny_tags: Iterable[str] = (),
    region_tags: Mapping[str, frozenset[str]] = REGION_TAGS,
) -> Residency:
    """Build a ``Residency`` from user input, refusing region and tag names nobody uses.

    A typo in a deny-list would otherwise silently allow the very region meant to be
    refused, so unknown names are an error rather than a no-op.
    """
    known_tags = frozenset().union(*region_tags.values()) if region_tags else frozenset()

    def norm(names: Iterable[str], known: Iterable[str], what: str) -> frozenset[str]:
        out = frozenset(n.strip().lower() for n in names if n.strip())
        unknown = sorted(out - frozenset(known))
        if unknown:
            raise InvalidInput(
                f"unknown {what}: {', '.join(unknown)}",
                hint=f"Known {what}s: {', '.join(sorted(known))}.",
            )
        return out

    res = Residency(
        allow_regions=norm(allow, region_tags, "region"),
        deny_regions=norm(deny, region_tags, "region"),
        require_tags=norm(require_tags, known_tags, "tag"),
        deny_tags=norm(deny_tags, known_tags, "tag"),
    )
    clash = (res.allow_regions & res.deny_regions) | (res.require_tags & res.deny_tags)
    if clash:
        raise InvalidInput(f"both allowed and denied: {', '.join(sorted(clash))}")
    return res


def check_residency(
    constraints: Residency,
    provider_region: str,
    region_tags: Mapping[str, frozenset[str]] = REGION_TAGS,
) -> list[str]:
    """Why a provider in ``provider_region`` may not run this work; empty when it may."""
    if constraints.unrestricted:
        return []
    region = provider_region.strip().lower()
    if region not in region_tags:
        return [f"provider region {provider_region!r} is unknown, and the job restricts regions"]
    reasons = []
    if constraints.allow_regions and region not in constraints.allow_regions:
        allowed = ", ".join(sorted(constraints.allow_regions))
        reasons.append(f"region {region} is not in the allow-list ({allowed})")
    if region in constraints.deny_regions:
        reasons.append(f"region {region} is denied")
    tags = region_tags[region]
    missing = sorted(constraints.require_tags - tags)
    if missing:
        reasons.append(f"region {region} lacks jurisdiction {', '.join(missing)}")
    denied = sorted(constraints.deny_tags & tags)
    if denied:
        reasons.append(f"region {region} is under denied jurisdiction {', '.join(denied)}")
    return reasons


@dataclass(frozen=True)
class ProviderProfile:
    """What placement needs to know about one provider (the coordinator fills it in).

    ``operator`` is who runs the machine: one operator may run many providers, and they
    fail together. ``uptime_30d`` comes from ``core.sla.uptime`` over the last 30 days.
    """

    address: str
    operator: str
    region: str
    gpu_class: str = "cpu"
    hardware_proven: bool = False
    stake: int = 0
    uptime_30d: float = 0.0


@dataclass(frozen=True)
class EnterpriseParams:
    """The enterprise tier's bar. ``min_stake`` defaults to io.net's 200 tokens per GPU
    (shared/data/market-facts.md); 99% uptime sits above the 98% at which datacenter
    hosts are delisted elsewhere."""

    min_stake: int = 200 * UNIT
    min_uptime: float = 0.99
    uptime_window_s: float = 30 * 86_400.0
    require_hardware_proof: bool = True
    require_datacenter_gpu: bool = False


def enterprise_eligible(provider: ProviderProfile, params: EnterpriseParams) -> list[str]:
    """Why ``provider`` may not serve the enterprise tier; empty when it may."""
    reasons = []
    if params.require_hardware_proof and not provider.hardware_proven:
        reasons.append("has not passed the hardware proof")
    if provider.stake < params.min_stake:
        reasons.append(
            f"stake {format_amount(provider.stake)} is below the tier's "
            f"{format_amount(params.min_stake)}"
        )
    if provider.uptime_30d < params.min_uptime:
        days = params.uptime_window_s / 86_400
        reasons.append(
            f"uptime {provider.uptime_30d:.2%} over {days:g} days is below {params.min_uptime:.2%}"
        )
    if params.require_datacenter_gpu:
        gpu = CATALOG.get(provider.gpu_class.lower())
        if gpu is None or gpu.tier is not Tier.ENTERPRISE:
            reasons.append(f"{provider.gpu_class} is not a datacenter GPU")
    return reasons


def screen(
    candidates: Iterable[ProviderProfile],
    residency: Residency = Residency(),
    enterprise: EnterpriseParams | None = None,
    region_tags: Mapping[str, frozenset[str]] = REGION_TAGS,
) -> tuple[list[ProviderProfile], dict[str, list[str]]]:
    """Split candidates into the eligible ones and, per refused address, its reasons."""
    ok: list[ProviderProfile] = []
    refused: dict[str, list[str]] = {}
    for p in candidates:
        reasons = check_residency(residency, p.region, region_tags)
        if enterprise is not None:
            reasons += enterprise_eligible(p, enterprise)
        if reasons:
            refused[p.address] = reasons
        else:
            ok.append(p)
    return ok, refused


def spread(
    candidates: Sequence[ProviderProfile],
    n: int,
    rng: random.Random | None = None,
    placed: Iterable[ProviderProfile] = (),
) -> list[ProviderProfile]:
    """Pick ``n`` distinct providers, spreading them over operators, then regions.

    Greedy: each pick is the candidate whose operator, then region, already holds the
    fewest picks, then the best 30-day uptime. That keeps the largest share held by any
    one operator as small as the pool allows. ``placed`` are holders already in place
    (a repair adds to them): they count towards their operator and region and are never
    picked again. ``rng`` breaks the remaining ties (so load spreads across equal
    providers); without it ties go by address, deterministically.
    """
    if n < 1:
        raise InvalidInput(f"need at least one replica, got {n}")
    held = list(placed)
    taken = {p.address.lower() for p in held}
    pool = [p for a, p in {p.address.lower(): p for p in candidates}.items() if a not in taken]
    if len(pool) < n:
        raise NoMatch(
            f"{n} replicas need {n} distinct providers; {len(pool)} eligible",
            hint="Widen the regions allowed, or ask for fewer replicas.",
            eligible=len(pool),
        )
    pool.sort(key=lambda p: p.address.lower())
    if rng is not None:
        rng.shuffle(pool)
    by_operator: Counter[str] = Counter(p.operator for p in held)
    by_region: Counter[str] = Counter(p.region for p in held)
    picked: list[ProviderProfile] = []
    for _ in range(n):
        # min() keeps the first of equal keys, so the shuffle (or address order) breaks ties.
        best = min(
            pool,
            key=lambda p: (by_operator[p.operator], by_region[p.region], -p.uptime_30d),
        )
        pool.remove(best)
        picked.append(best)
        by_operator[best.operator] += 1
        by_region[best.region] += 1
    return picked


def place_replicas(
    candidates: Iterable[ProviderProfile],
    n: int,
    residency: Residency = Residency(),
    enterprise: EnterpriseParams | None = None,
    rng: random.Random | None = None,
) -> list[ProviderProfile]:
    """Screen candidates and spread ``n`` replicas over the eligible ones.

    Raises ``NoMatch`` when too few qualify, with each refused provider's reasons in
    ``details['refused']`` and a count of the commonest reasons in the message.
    """
    ok, refused = screen(candidates, residency, enterprise)
    if len(ok) >= n:
        return spread(ok, n, rng)
    common = Counter(r for rs in refused.values() for r in rs).most_common(3)
    why = "; ".join(f"{reason} (x{count})" for reason, count in common) or "no providers online"
    raise NoMatch(
        f"{n} replicas need {n} eligible providers, {len(ok)} qualify: {why}",
        hint="Widen the allowed regions or tags, or use the consumer tier.",
        refused=refused,
    )
