"""The economics toolkit against market-facts.md's check figures and its own invariants."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudepin.core.errors import InvalidInput
from gpudepin.core.hardware import CATALOG
from gpudepin.economics.defaults import (
    ELECTRICITY_USD_PER_KWH,
    GPU_DEFAULTS,
    PUE_DATACENTER,
    all_defaults,
    gpu_defaults,
    profit_defaults,
)
from gpudepin.economics.profit import profit, sensitivity
from gpudepin.economics.tokenomics import (
    DecliningSchedule,
    RenderLikeSchedule,
    Scenario,
    TokenomicsParams,
    demand,
    equilibrium_price,
    simulate,
)
from gpudepin.economics.viability import NetworkFigures, Status, grade, scorecard

# --- profit -----------------------------------------------------------------------------


def check_4090(u: float, **kw: float) -> float:
    return profit("rtx4090", u, 0.35, 0.15, 0.16, **kw).net_usd_per_day


def test_rtx4090_check_figures_to_the_cent() -> None:
    half = profit("rtx4090", 0.5, 0.35, 0.15, 0.16)
    full = profit("rtx4090", 1.0, 0.35, 0.15, 0.16)
    assert round(half.gross_usd_per_day, 2) == 4.20
    assert round(half.net_usd_per_day, 2) == 2.23
    assert round(full.net_usd_per_day, 2) == 4.84
    assert half.kwh_per_day == pytest.approx(8.4)
    assert half.revenue_usd_per_day == pytest.approx(3.57)
    assert half.net_usd_per_month == pytest.approx(half.net_usd_per_day * 30.4)


def test_quoted_3_to_7_dollars_a_day_is_gross_between_36_and_83_percent() -> None:
    assert profit("rtx4090", 0.36, 0.35, 0.15, 0.16).gross_usd_per_day == pytest.approx(3.0, 0.01)
    assert profit("rtx4090", 0.83, 0.35, 0.15, 0.16).gross_usd_per_day == pytest.approx(7.0, 0.01)


def test_payback_months_from_capex_and_none_when_losing_money() -> None:
    r = profit("rtx4090", 0.5, 0.35, 0.15, 0.16, capex=1700)
    assert r.payback_months == pytest.approx(1700 / (30.4 * 2.226))
    # Idle at German power prices loses money: payback never comes.
    idle = profit("rtx4090", 0.0, 0.35, 0.15, 0.43, capex=1700)
    assert idle.net_usd_per_day < 0
    assert idle.payback_months is None
    assert profit("rtx4090", 0.5, 0.35, 0.15, 0.16).payback_months is None


def test_token_rewards_opex_and_pue_enter_net() -> None:
    base = check_4090(0.5)
    assert check_4090(0.5, token_rewards_usd_per_day=1.0) == pytest.approx(base + 1.0)
    assert check_4090(0.5, other_opex_usd_per_day=0.5) == pytest.approx(base - 0.5)
    # PUE 1.56 scales the 1.344 $/day power bill.
    assert check_4090(0.5, pue=1.56) == pytest.approx(base - 1.344 * 0.56)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("utilization", {"utilization": 1.5}),
        ("utilization", {"utilization": -0.1}),
        ("utilization", {"utilization": math.nan}),
        ("price", {"price_usd_per_hour": -1.0}),
        ("fee", {"fee": 1.2}),
        ("electricity price", {"electricity_usd_per_kwh": -0.1}),
        ("PUE", {"pue": 0.5}),
    ],
)
def test_bad_inputs_are_invalid_input_naming_the_field(
    field: str, kwargs: dict[str, float]
) -> None:
    args: dict[str, float] = {
        "utilization": 0.5,
        "price_usd_per_hour": 0.35,
        "fee": 0.15,
        "electricity_usd_per_kwh": 0.16,
    } | kwargs
    with pytest.raises(InvalidInput, match=field):
        profit("rtx4090", **args)


def test_unknown_gpu_is_invalid_input_listing_known_classes() -> None:
    with pytest.raises(InvalidInput) as info:
        profit("rtx9999", 0.5, 0.35, 0.15, 0.16)
    assert "rtx4090" in info.value.hint


@settings(max_examples=60, deadline=None)
@given(
    us=st.lists(st.floats(0, 1), min_size=2, max_size=5),
    ps=st.lists(st.floats(0, 10), min_size=2, max_size=5),
    fee=st.floats(0, 0.99),
    power=st.floats(0, 1),
    gpu=st.sampled_from(sorted(CATALOG)),
)
def test_sensitivity_is_monotone_in_price_and_in_utilization_when_rent_pays_power(
    us: list[float], ps: list[float], fee: float, power: float, gpu: str
) -> None:
    us, ps = sorted(us), sorted(ps)
    table = sensitivity(gpu, us, ps, fee, power)
    rows = table.net_usd_per_day
    g = CATALOG[gpu]
    for row in rows:
        assert all(a <= b + 1e-9 for a, b in itertools.pairwise(row))
    for j, p in enumerate(ps):
        # One more rented hour earns p*(1-fee) and costs the extra draw of loaded over idle.
        hour_margin = p * (1 - fee) - (g.wall_watts_loaded - g.wall_watts_idle) / 1000 * power
        col = [row[j] for row in rows]
        pairs = itertools.pairwise(col)
        if hour_margin >= 0:
            assert all(a <= b + 1e-9 for a, b in pairs)
        else:
            assert all(a >= b - 1e-9 for a, b in pairs)


def test_sensitivity_cell_matches_profit() -> None:
    table = sensitivity("rtx4090", [0.5, 1.0], [0.2, 0.35], 0.15, 0.16)
    assert table.net_usd_per_day[0][1] == pytest.approx(2.226)
    assert table.net_usd_per_day[1][1] == pytest.approx(4.836)
    assert json.loads(json.dumps(table.to_dict()))["prices_usd_per_hour"] == [0.2, 0.35]


def test_profit_chart_writes_a_png(tmp_path: Path) -> None:
    from gpudepin.economics.profit import profit_chart

    out = profit_chart(profit("rtx4090", 0.5, 0.35, 0.15, 0.16), tmp_path / "p" / "c.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- defaults ---------------------------------------------------------------------------


def test_every_default_has_a_source_and_market_facts_figures_match() -> None:
    figures = all_defaults()
    assert all(f.source for f in figures.values())
    d = gpu_defaults("rtx4090")
    assert (d.wall_watts_loaded.value, d.wall_watts_idle.value) == (600, 100)
    assert d.median_usd_per_hour.value == 0.35
    assert d.purchase_usd is not None and d.purchase_usd.value == 1700
    assert gpu_defaults("h100-80g").hyperscaler_usd_per_hour.value == 6.8  # type: ignore[union-attr]
    assert ELECTRICITY_USD_PER_KWH["us-home"].value == 0.16
    assert set(GPU_DEFAULTS) == set(CATALOG)


def test_datacenter_cards_default_to_industrial_power_and_datacenter_pue() -> None:
    d = profit_defaults("a100-80g")
    assert d["pue"] is PUE_DATACENTER
    assert d["electricity_usd_per_kwh"] == ELECTRICITY_USD_PER_KWH["us-industrial"]
    assert profit_defaults("rtx4090", place="germany")["electricity_usd_per_kwh"].value == 0.43  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match="place"):
        profit_defaults("rtx4090", place="mars")


# --- tokenomics -------------------------------------------------------------------------


def test_render_like_schedule_emits_year1_then_lower() -> None:
    s = RenderLikeSchedule()
    assert sum(s.tokens_in_month(m) for m in range(12)) == pytest.approx(9.13e6)
    assert sum(s.tokens_in_month(m) for m in range(12, 24)) == pytest.approx(5.9e6)
    d = DecliningSchedule(first_month_tokens=1000.0)
    assert d.tokens_in_month(1) == pytest.approx(1000 * (1 - 0.0102))


@settings(max_examples=40, deadline=None)
@given(
    scenario=st.sampled_from(list(Scenario)),
    months=st.integers(1, 60),
    d0=st.floats(1e3, 1e9),
    growth=st.floats(-0.5, 0.5),
    fee=st.floats(0, 0.9),
    supply=st.floats(0, 1e9),
    price=st.floats(0.001, 100),
    damping=st.floats(0.01, 1),
)
def test_supply_is_conserved_and_burns_follow_the_formula(
    scenario: Scenario,
    months: int,
    d0: float,
    growth: float,
    fee: float,
    supply: float,
    price: float,
    damping: float,
) -> None:
    params = TokenomicsParams(
        months=months,
        scenario=scenario,
        initial_demand_usd_per_month=d0,
        growth_per_month=growth,
        fee=fee,
        initial_supply=supply,
        initial_price_usd=price,
        damping=damping,
    )
    run = simulate(params)
    assert run.months[0].supply_start == supply
    for prev, m in itertools.pairwise(run.months):
        assert m.supply_start == prev.supply_end
    for m in run.months:
        assert m.supply_end == m.supply_start + m.minted - m.burned
        assert m.supply_end >= 0
        assert m.burned <= (1 - fee) * m.demand_usd / m.price_usd * (1 + 1e-12)
        assert m.equilibrium_price_usd == pytest.approx((1 - fee) * m.demand_usd / m.minted)
        assert m.provider_income_usd == pytest.approx(
            m.provider_income_from_fees_usd + m.provider_income_from_emissions_usd
        )
        assert m.provider_income_from_emissions_usd >= -1e-6
    assert simulate(params) == run  # deterministic


def test_equilibrium_price_formula_and_burns_equal_mints_there() -> None:
    mint = 9.13e6 / 12
    p_star = equilibrium_price(0.05, 1_000_000, mint)
    assert p_star == pytest.approx(0.95 * 1_000_000 / mint)
    # Started at equilibrium with flat demand, the token stays there and supply is flat.
    run = simulate(
        TokenomicsParams(
            months=12,
            scenario=Scenario.FLAT,
            initial_demand_usd_per_month=1_000_000,
            initial_price_usd=p_star,
        )
    )
    for m in run.months:
        assert m.price_usd == pytest.approx(p_star)
        assert m.burned == pytest.approx(m.minted)
        assert m.provider_income_from_emissions_usd == pytest.approx(0, abs=1e-6)
    assert run.fee_share_of_provider_income == pytest.approx(1.0)
    with pytest.raises(InvalidInput):
        equilibrium_price(0.05, 1.0, 0.0)


def test_price_moves_toward_equilibrium_by_the_damping_share() -> None:
    run = simulate(TokenomicsParams(months=3, scenario=Scenario.FLAT, damping=0.25))
    m0, m1 = run.months[0], run.months[1]
    assert m1.price_usd == pytest.approx(m0.price_usd + 0.25 * (m0.equilibrium_price_usd - 1.0))


def test_scenarios_shape_demand_and_a_bust_leaves_emissions_unbacked() -> None:
    p = TokenomicsParams(bust_month=12, bust_drop=0.8, growth_per_month=0.05)
    assert demand(dataclasses.replace(p, scenario=Scenario.FLAT), 20) == 500_000
    assert demand(p, 2) == pytest.approx(500_000 * 1.05**2)
    bust = dataclasses.replace(p, scenario=Scenario.BUST)
    assert demand(bust, 11) == pytest.approx(500_000 * 1.05**11)
    assert demand(bust, 12) == pytest.approx(500_000 * 1.05**12 * 0.2)
    grow, busted = simulate(p), simulate(bust)
    assert busted.fee_share_of_provider_income < grow.fee_share_of_provider_income
    assert busted.months[-1].supply_end > grow.months[-1].supply_end
    assert busted.months[-1].price_usd < grow.months[-1].price_usd


@pytest.mark.parametrize(
    "change",
    [{"months": 0}, {"fee": 1.0}, {"damping": 0.0}, {"initial_price_usd": 0.0}, {"bust_drop": 1.0}],
)
def test_tokenomics_refuses_parameters_it_cannot_run(change: dict[str, float]) -> None:
    with pytest.raises(InvalidInput):
        simulate(dataclasses.replace(TokenomicsParams(), **change))


def test_tokenomics_chart_and_json(tmp_path: Path) -> None:
    from gpudepin.economics.tokenomics import tokenomics_chart

    run = simulate(TokenomicsParams(months=6))
    assert tokenomics_chart(run, tmp_path / "t.png").stat().st_size > 1000
    data = json.loads(json.dumps(run.to_dict()))
    assert len(data["months"]) == 6
    assert data["summary"]["total_minted"] == pytest.approx(6 * 9.13e6 / 12)


# --- viability --------------------------------------------------------------------------


def healthy() -> NetworkFigures:
    return NetworkFigures(
        gpus_by_class={"rtx4090": 600, "rtx3090": 200, "a100-80g": 100, "h100-80g": 50},
        gpus_by_region={"eu": 400, "us": 350, "asia": 200},
        median_price_usd_per_hour={"rtx4090": 0.35, "a100-80g": 1.0, "h100-80g": 2.0},
        volume_usd=100_000,
        enterprise_volume_usd=40_000,
        sla_leases=1000,
        sla_leases_met=995,
        audits=2000,
        audit_failures=10,
        provider_income_from_fees_usd=90_000,
        provider_income_from_emissions_usd=30_000,
        tokens_minted=1_000_000,
        tokens_burned=1_100_000,
    )


def statuses(figures: NetworkFigures) -> dict[str, Status]:
    return {m.name: m.status for m in scorecard(figures).metrics}


def test_a_healthy_network_passes_every_pillar_with_grade_a() -> None:
    card = scorecard(healthy())
    assert set(statuses(healthy()).values()) == {Status.PASS}
    assert card.grade == "A"
    assert len(card.metrics) == 8


@pytest.mark.parametrize(
    ("change", "metric", "expected"),
    [
        ({"sla_leases_met": 990}, "sla_attainment", Status.PASS),  # exactly 0.99
        ({"sla_leases_met": 985}, "sla_attainment", Status.WARN),
        ({"sla_leases_met": 979}, "sla_attainment", Status.FAIL),  # below the 98% delisting
        ({"audit_failures": 20}, "verification_failure_rate", Status.PASS),
        ({"audit_failures": 100}, "verification_failure_rate", Status.WARN),
        ({"audit_failures": 101}, "verification_failure_rate", Status.FAIL),
        ({"enterprise_volume_usd": 10_000}, "enterprise_volume_share", Status.WARN),
        ({"enterprise_volume_usd": 5_000}, "enterprise_volume_share", Status.FAIL),
        ({"provider_income_from_fees_usd": 10_000}, "fee_share_of_provider_income", Status.WARN),
        ({"provider_income_from_fees_usd": 5_000}, "fee_share_of_provider_income", Status.FAIL),
        ({"tokens_burned": 1_000_000}, "burn_mint_ratio", Status.PASS),
        ({"tokens_burned": 600_000}, "burn_mint_ratio", Status.WARN),
        ({"tokens_burned": 100_000}, "burn_mint_ratio", Status.FAIL),
        ({"gpus_by_region": {"us": 900, "eu": 100}}, "largest_region_share", Status.FAIL),
        ({"gpus_by_region": {"us": 700, "eu": 300}}, "largest_region_share", Status.WARN),
        ({"gpus_by_class": {"rtx4090": 5, "a100-80g": 1}}, "gpu_classes_online", Status.WARN),
        ({"median_price_usd_per_hour": {"h100-80g": 6.0}}, "price_vs_hyperscaler", Status.FAIL),
        ({"median_price_usd_per_hour": {"a100-80g": 3.0}}, "price_vs_hyperscaler", Status.WARN),
    ],
)
def test_thresholds(change: dict[str, object], metric: str, expected: Status) -> None:
    figures = dataclasses.replace(healthy(), **change)  # type: ignore[arg-type]
    assert statuses(figures)[metric] is expected


def test_missing_data_scores_no_data_and_does_not_count() -> None:
    figures = dataclasses.replace(
        healthy(), sla_leases=0, sla_leases_met=0, audits=0, audit_failures=0
    )
    s = statuses(figures)
    assert s["sla_attainment"] is Status.NO_DATA
    assert s["verification_failure_rate"] is Status.NO_DATA
    assert scorecard(figures).grade == "A"
    assert scorecard(NetworkFigures()).grade == "n/a"


def test_burning_with_nothing_minted_passes_and_serialises() -> None:
    figures = dataclasses.replace(healthy(), tokens_minted=0)
    card = scorecard(figures)
    assert statuses(figures)["burn_mint_ratio"] is Status.PASS
    by_name = {m["name"]: m for m in card.to_dict()["metrics"]}
    json.dumps(card.to_dict(), allow_nan=False)
    assert by_name["burn_mint_ratio"]["value"] is None


def test_grade_falls_with_failures() -> None:
    bad = dataclasses.replace(
        healthy(),
        sla_leases_met=900,
        audit_failures=500,
        enterprise_volume_usd=0,
        provider_income_from_fees_usd=0,
        tokens_burned=0,
        gpus_by_region={"us": 1000},
    )
    card = scorecard(bad)
    assert card.grade == "D"
    assert card.to_dict()["pillars"]["enterprise adoption"] == "fail"
    assert grade(scorecard(dataclasses.replace(healthy(), tokens_burned=600_000)).metrics) == "A"


def test_network_figures_refuse_inconsistent_or_unknown_input() -> None:
    with pytest.raises(InvalidInput, match="unknown"):
        NetworkFigures.from_dict({"volume": 1})
    with pytest.raises(InvalidInput, match="exceed"):
        NetworkFigures(audits=1, audit_failures=2)
    with pytest.raises(InvalidInput, match="volume_usd"):
        NetworkFigures.from_dict({"volume_usd": -5})
    assert NetworkFigures.from_dict(healthy().to_dict()) == healthy()
