"""Dashboard figures from a real (SQLite) coordinator database: what a visitor reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from gpudepin.coordinator import db, store
from gpudepin.coordinator.db import make_engine, migrate
from gpudepin.core import ledger
from gpudepin.core.money import UNIT
from gpudepin.dashboard import figures, history
from gpudepin.economics.viability import scorecard

NOW = 1_800_000_000.0
DAY = figures.DAY


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(eng)
    yield eng
    eng.dispose()


def provider(conn: object, address: str, cls: str, region: str, seen: float, gpus: int = 1) -> None:
    conn.execute(  # type: ignore[attr-defined]
        insert(db.providers).values(
            address=address,
            name=address,
            region=region,
            operator=address,
            gpu_class=cls,
            hardware={"gpu_class": cls, "gpu_count": gpus},
            registered_at=seen,
            last_seen=seen,
        )
    )


def job(
    conn: object, job_id: str, state: str, created: float, tasks: list[tuple[str, str]]
) -> None:
    conn.execute(  # type: ignore[attr-defined]
        insert(db.jobs).values(
            id=job_id,
            buyer="0xbuyer",
            kind="render",
            state=state,
            spec={},
            inputs={"scene": "secret-sha"},
            price_per_task=UNIT,
            escrow=len(tasks) * UNIT,
            max_attempts=3,
            created_at=created,
            updated_at=created,
        )
    )
    for i, (task_state, who) in enumerate(tasks):
        conn.execute(  # type: ignore[attr-defined]
            insert(db.tasks).values(
                id=f"{job_id}-{i}",
                job_id=job_id,
                idx=i,
                label=f"frame {i}",
                spec={},
                price=UNIT,
                state=task_state,
                attempts=1,
                provider=who,
                result_meta={"seconds": 36.0},
                updated_at=created,
            )
        )


def pay(conn: object, who: str, gross: int, at: float, ref: str = "j1") -> None:
    c = conn
    store.apply(c, ledger.deposit("0xbuyer", gross, ref="t"), at)  # type: ignore[arg-type]
    store.apply(
        c,  # type: ignore[arg-type]
        ledger.lock_escrow(store.all_balances(c), "0xbuyer", ref, gross),  # type: ignore[arg-type]
        at,
    )
    bals = store.all_balances(c)  # type: ignore[arg-type]
    store.apply(c, ledger.pay_from_escrow(bals, "0xbuyer", ref, who, gross, 500), at)  # type: ignore[arg-type]


@pytest.fixture
def busy_network(engine: Engine) -> Engine:
    with engine.begin() as conn:
        provider(conn, "0xa", "rtx4090", "eu-west", NOW - 1)
        provider(conn, "0xb", "rtx4090", "us-east", NOW - 2, gpus=2)
        provider(conn, "0xc", "h100-80g", "eu-west", NOW - 3)
        provider(conn, "0xd", "rtx3090", "eu-west", NOW - 3600)  # offline
        job(conn, "j1", "completed", NOW - 3600, [("accepted", "0xa"), ("accepted", "0xc")])
        job(conn, "j2", "running", NOW - 60, [("assigned", "0xb"), ("pending", None)])  # type: ignore[list-item]
        job(conn, "j0", "completed", NOW - 3 * DAY - 100, [("accepted", "0xa")])
        pay(conn, "0xa", 10 * UNIT, NOW - 100)
        pay(conn, "0xc", 30 * UNIT, NOW - 50, ref="j1b")
        pay(conn, "0xa", 4 * UNIT, NOW - 2 * DAY, ref="j0")  # outside the 24 h window
        store.apply(conn, ledger.burn_fees(store.all_balances(conn)), NOW - 10)
        store.apply(conn, ledger.mint_rewards({"0xa": 3 * UNIT, "0xc": 1 * UNIT}), NOW - 5)
        store.record(conn, NOW - 20, "audit_passed", task_id="j1-0")
        store.record(conn, NOW - 20, "audit_failed", task_id="j1-1")
    return engine


def test_headline_counts_what_is_online_busy_and_paid(busy_network: Engine) -> None:
    with busy_network.connect() as conn:
        h = figures.headline(conn, NOW, online_ttl_s=20)
    assert (h.providers_total, h.providers_online, h.gpus_online) == (4, 3, 4)
    assert h.gpus_by_class == {"h100-80g": 1, "rtx4090": 3}
    assert h.gpus_by_region == {"eu-west": 2, "us-east": 2}
    assert h.busy == 1 and h.utilization == pytest.approx(1 / 3)
    assert (h.jobs_total, h.jobs_completed, h.jobs_running, h.jobs_24h) == (3, 2, 1, 2)
    assert h.volume_24h == 40 * UNIT  # the payment two days ago is outside the window
    assert h.fees_24h == 2 * UNIT
    # every fee collected so far (24 h and older) was burned in the window
    assert h.burned_24h == 2 * UNIT + 4 * UNIT // 20
    assert h.minted_24h == 4 * UNIT
    assert (h.audits_24h, h.audit_failures_24h) == (2, 1)


def test_earnings_per_gpu_day_divide_pay_and_emissions_by_gpus_online(busy_network: Engine) -> None:
    with busy_network.connect() as conn:
        e = figures.earnings_per_gpu_day(conn, NOW, 20, token_usd=0.5)
    # 0xa earned 9.5 paid + 3 minted; the class has 3 GPUs online
    assert e["rtx4090"]["tokens_per_gpu_day"] == pytest.approx(12.5 / 3)
    assert e["rtx4090"]["usd_per_gpu_day"] == pytest.approx(12.5 / 3 * 0.5)
    assert e["h100-80g"]["tokens_per_gpu_day"] == pytest.approx(28.5 + 1)


def test_daily_series_puts_each_payment_on_its_day(busy_network: Engine) -> None:
    with busy_network.connect() as conn:
        days = figures.daily(conn, NOW, 3)
    assert [d["volume"] for d in days] == [0, 4 * UNIT, 40 * UNIT]
    assert [d["jobs"] for d in days] == [0, 0, 2]
    assert days[-1]["minted"] == 4 * UNIT


def test_network_figures_feed_the_scorecard(busy_network: Engine) -> None:
    with busy_network.connect() as conn:
        nf = figures.network_figures(conn, NOW, 20, token_usd=2.0)
    assert nf.volume_usd == pytest.approx(88.0)
    assert nf.enterprise_volume_usd == pytest.approx(60.0)  # the h100's job
    assert nf.audits == 2 and nf.audit_failures == 1
    assert nf.tokens_minted == pytest.approx(4.0)
    # 1 token per task of 36 s at $2 per token is $200 per GPU-hour
    assert nf.median_price_usd_per_hour["rtx4090"] == pytest.approx(200.0)
    card = scorecard(nf)
    assert card.grade != "n/a"


def test_history_answers_24_hours_ago_from_its_samples(busy_network: Engine) -> None:
    with busy_network.begin() as conn:
        history.record(conn, figures.headline(conn, NOW - DAY - 60, 20))
        history.record(conn, figures.headline(conn, NOW, 20))
    with busy_network.connect() as conn:
        ago = history.near(conn, NOW - DAY)
        snap = figures.snapshot(conn, NOW, 20, 1.0)
    assert ago is not None and ago["at"] == pytest.approx(NOW - DAY - 60)
    assert snap["ago_24h"]["at"] == pytest.approx(NOW - DAY - 60)
    assert snap["headline"]["volume_24h"] == "40"
    assert not snap["has_tables"]["leases"] or snap["regions"]


def test_an_empty_network_has_no_figures_to_divide_by(engine: Engine) -> None:
    with engine.connect() as conn:
        h = figures.headline(conn, NOW, 20)
        snap = figures.snapshot(conn, NOW, 20, 1.0)
    assert h.utilization == 0.0 and h.providers_online == 0
    assert snap["ago_24h"] is None and snap["market_prints"] == []


def test_metrics_page_and_grafana_dashboard_agree(tmp_path: Path) -> None:
    import json

    from fastapi.testclient import TestClient

    from gpudepin.coordinator.app import create_app
    from gpudepin.settings import CoordinatorSettings

    app = create_app(CoordinatorSettings(home=tmp_path), run_loops=False, clock=lambda: NOW)
    with TestClient(app) as http:
        with app.state.rt.engine.begin() as conn:
            provider(conn, "0xa", "rtx4090", "eu-west", NOW - 1)
        exposition = http.get("/metrics").text
        page = http.get("/")
        stats = http.get("/v1/stats").json()
        viability = http.get("/v1/stats/viability").json()
    assert "gpudepin_providers_online 1.0" in exposition
    assert 'gpudepin_gpus_online_by_class{gpu_class="rtx4090"} 1.0' in exposition
    root = Path(__file__).resolve().parents[2]
    grafana = json.loads((root / "deploy" / "grafana-dashboard.json").read_text())
    for panel in grafana["panels"]:
        for target in panel["targets"]:
            assert f"{target['expr']} " in exposition or f"{target['expr']}{{" in exposition
    assert page.status_code == 200 and 'data-figure="providers_online"' in page.text
    assert "no market data yet" in page.text
    assert stats["headline"]["providers_online"] == 1
    assert viability["figures"]["gpus_by_class"] == {"rtx4090": 1}
