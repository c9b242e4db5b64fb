from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core.errors import InvalidInput, NoMatch
from gpudepin.core.money import UNIT
from gpudepin.core.placement import (
    EnterpriseParams,
    ProviderProfile,
    Residency,
    check_residency,
    enterprise_eligible,
    parse_residency,
    place_replicas,
    spread,
)

GOOD = dict(hardware_proven=True, stake=500 * UNIT, uptime_30d=0.999)


def prov(addr: str, operator: str, region: str, **kw: object) -> ProviderProfile:
    return ProviderProfile(addr, operator, region, **kw)  # type: ignore[arg-type]


def test_allow_list_accepts_the_right_region_and_refuses_the_wrong_one() -> None:
    eu_only = parse_residency(allow=["eu-west", "EU-Central"])
    assert check_residency(eu_only, "eu-central") == []
    reasons = check_residency(eu_only, "us-east")
    assert reasons and "allow-list" in reasons[0]


def test_jurisdiction_tags() -> None:
    gdpr = parse_residency(require_tags=["gdpr"])
    assert check_residency(gdpr, "eu-west") == []
    assert check_residency(gdpr, "uk-south") == []
    assert "gdpr" in check_residency(gdpr, "us-west")[0]
    not_us = parse_residency(deny_tags=["us"])
    assert check_residency(not_us, "ap-south") == []
    assert "denied jurisdiction us" in check_residency(not_us, "us-east")[0]


def test_deny_list_and_unknown_regions() -> None:
    res = parse_residency(deny=["us-west"])
    assert check_residency(res, "us-west") == ["region us-west is denied"]
    assert "unknown" in check_residency(res, "my-basement")[0]
    assert check_residency(Residency(), "my-basement") == []


def test_typos_in_constraints_are_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown region"):
        parse_residency(deny=["us-wset"])
    with pytest.raises(InvalidInput, match="unknown tag"):
        parse_residency(require_tags=["gdrp"])
    with pytest.raises(InvalidInput, match="both allowed and denied"):
        parse_residency(allow=["eu-west"], deny=["eu-west"])


def test_enterprise_eligibility_reasons() -> None:
    params = EnterpriseParams()
    assert enterprise_eligible(prov("0x1", "op", "eu-west", **GOOD), params) == []
    bad = prov("0x2", "op", "eu-west", stake=10 * UNIT, uptime_30d=0.97)
    reasons = enterprise_eligible(bad, params)
    assert len(reasons) == 3
    assert "hardware proof" in reasons[0]
    assert "stake 10 is below the tier's 200" in reasons[1]
    assert "97.00% over 30 days" in reasons[2]
    lax = EnterpriseParams(min_stake=0, min_uptime=0.9, require_hardware_proof=False)
    assert enterprise_eligible(bad, lax) == []
    strict = EnterpriseParams(require_datacenter_gpu=True)
    assert (
        "not a datacenter GPU"
        in enterprise_eligible(prov("0x3", "op", "eu-west", gpu_class="rtx4090", **GOOD), strict)[0]
    )
    assert (
        enterprise_eligible(prov("0x4", "op", "eu-west", gpu_class="h100-80g", **GOOD), strict)
        == []
    )


def test_spread_uses_distinct_operators_and_regions_when_it_can() -> None:
    pool = [
        prov(f"0x{i}", f"op{i % 3}", ["eu-west", "us-east", "ap-south"][i % 3]) for i in range(9)
    ]
    picked = spread(pool, 3, random.Random(1))
    assert len({p.operator for p in picked}) == 3
    assert len({p.region for p in picked}) == 3


@given(
    ops=st.lists(st.integers(0, 4), min_size=1, max_size=30),
    n=st.integers(1, 10),
    seed=st.integers(0, 1000),
)
def test_no_operator_holds_more_replicas_than_it_must(ops: list[int], n: int, seed: int) -> None:
    pool = [prov(f"0x{i}", f"op{o}", "eu-west") for i, o in enumerate(ops)]
    if n > len(pool):
        with pytest.raises(NoMatch):
            spread(pool, n)
        return
    picked = spread(pool, n, random.Random(seed))
    assert len({p.address for p in picked}) == n
    # The best possible: fill operators level by level, capped by each one's size.
    sizes = Counter(ops)
    level = 0
    while sum(min(s, level) for s in sizes.values()) < n:
        level += 1
    assert max(Counter(p.operator for p in picked).values()) == level


def test_place_replicas_explains_no_match() -> None:
    pool = [
        prov("0x1", "a", "us-east", **GOOD),
        prov("0x2", "b", "eu-west", **GOOD),
        prov("0x3", "c", "eu-west", hardware_proven=False, stake=500 * UNIT, uptime_30d=1.0),
    ]
    eu = parse_residency(require_tags=["eu"])
    picked = place_replicas(pool, 1, eu, EnterpriseParams())
    assert [p.address for p in picked] == ["0x2"]
    with pytest.raises(NoMatch) as err:
        place_replicas(pool, 2, eu, EnterpriseParams())
    assert "1 qualify" in err.value.message
    refused = err.value.details["refused"]
    assert isinstance(refused, dict)
    assert set(refused) == {"0x1", "0x3"}
    assert "hardware proof" in refused["0x3"][0]
