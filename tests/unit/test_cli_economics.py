"""`gpudepin economics ...` through Typer's CliRunner on the sub-app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpudepin.cli.economics import app

runner = CliRunner()
CHECK = ["--gpu", "rtx4090", "--utilization", "0.5", "--price", "0.35"]
CHECK += ["--fee", "0.15", "--electricity", "0.16"]


def run_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_profit_json_gives_the_check_figures_with_plain_keys() -> None:
    data = run_json("profit", *CHECK)
    assert round(data["net_usd_per_day"], 2) == 2.23  # type: ignore[call-overload]
    assert round(data["gross_usd_per_day"], 2) == 4.20  # type: ignore[call-overload]
    for key in ("revenue_usd_per_day", "electricity_usd_per_day", "net_usd_per_month"):
        assert key in data
    assert round(data["payback_months"], 1) == 25.1  # type: ignore[call-overload]
    sources = data["sources"]
    assert isinstance(sources, dict)
    assert sources["price_usd_per_hour"] == "given"
    assert "market-facts.md" in sources["pue"]


def test_profit_defaults_show_their_source_in_the_table() -> None:
    result = runner.invoke(app, ["profit", "--gpu", "rtx4090"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "rtx4090 marketplace median $/h" in out
    assert "US residential" in out
    assert "Render 5% network fee" in out
    assert "$2.65/day" in out  # net at the defaults: 5% fee, 50% utilization, $0.16/kWh


def test_profit_place_picks_the_power_price() -> None:
    data = run_json("profit", "--gpu", "rtx4090", "--place", "germany")
    assert data["electricity_usd_per_kwh"] == 0.43
    assert "--place germany" in data["sources"]["electricity_usd_per_kwh"]  # type: ignore[index]


def test_profit_sensitivity_and_chart(tmp_path: Path) -> None:
    chart = tmp_path / "profit.png"
    data = run_json("profit", *CHECK, "--sensitivity", "--chart", str(chart))
    table = data["sensitivity"]
    assert isinstance(table, dict)
    assert table["prices_usd_per_hour"] == [0.2, 0.35, 0.8]
    assert 0.5 in table["utilizations"]
    assert chart.stat().st_size > 1000
    assert chart.read_bytes()[:4] == b"\x89PNG"


def test_profit_table_mode_prints_sensitivity() -> None:
    result = runner.invoke(app, ["profit", *CHECK, "--sensitivity"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "$4.84" in result.stdout  # 100% at $0.35/h


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--gpu", "rtx4090", "--utilization", "1.5"], "utilization"),
        (["--gpu", "rtx4090", "--price", "-1"], "price"),
        (["--gpu", "rtx9999"], "unknown GPU class"),
        (["--gpu", "rtx4090", "--place", "mars"], "unknown place"),
    ],
)
def test_profit_bad_input_is_one_line_and_non_zero(args: list[str], words: str) -> None:
    result = runner.invoke(app, ["profit", *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and words in lines[0]
    assert "Traceback" not in result.output


def test_tokenomics_json_and_chart(tmp_path: Path) -> None:
    chart = tmp_path / "tok.png"
    data = run_json("tokenomics", "--months", "24", "--scenario", "bust", "--chart", str(chart))
    months = data["months"]
    assert isinstance(months, list) and len(months) == 24
    for m in months:
        assert m["supply_end"] == pytest.approx(m["supply_start"] + m["minted"] - m["burned"])
    assert data["summary"]["scenario"] == "bust"  # type: ignore[index]
    assert chart.stat().st_size > 1000


def test_tokenomics_table_and_bad_scenario() -> None:
    result = runner.invoke(app, ["tokenomics", "--months", "6"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "growth scenario" in result.stdout and "burn/mint over the run" in result.stdout
    bad = runner.invoke(app, ["tokenomics", "--scenario", "boom"])
    assert bad.exit_code == 2
    assert (
        bad.stderr.strip() == "error: unknown scenario 'boom' (Choose one of: flat, growth, bust.)"
    )


def test_viability_without_figures_or_a_live_network_says_what_to_give(tmp_path: Path) -> None:
    result = runner.invoke(app, ["viability"], env={"GPUDEPIN_HOME": str(tmp_path)})
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "live network" in result.stderr and "--figures" in result.stderr


def test_viability_from_a_figures_file(tmp_path: Path) -> None:
    template = run_json("viability", "--template")
    template |= {
        "gpus_by_class": {"rtx4090": 10, "a100-80g": 2, "h100-80g": 1},
        "gpus_by_region": {"eu": 5, "us": 5, "asia": 3},
        "median_price_usd_per_hour": {"h100-80g": 2.0},
        "volume_usd": 1000,
        "enterprise_volume_usd": 400,
        "sla_leases": 10,
        "sla_leases_met": 10,
        "audits": 100,
        "audit_failures": 0,
        "provider_income_from_fees_usd": 900,
        "provider_income_from_emissions_usd": 100,
        "tokens_minted": 10,
        "tokens_burned": 12,
    }
    path = tmp_path / "figures.json"
    path.write_text(json.dumps(template))
    data = run_json("viability", "--figures", str(path))
    assert data["grade"] == "A"
    assert {m["status"] for m in data["metrics"]} == {"pass"}  # type: ignore[union-attr,index]
    table = runner.invoke(app, ["viability", "--figures", str(path)], env={"COLUMNS": "200"})
    assert "grade A" in table.stdout and "sla_attainment" in table.stdout


def test_viability_bad_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for path in (bad, tmp_path / "missing.json"):
        result = runner.invoke(app, ["viability", "--figures", str(path)])
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) == 1
    bad.write_text(json.dumps({"volume_usd": 1, "enterprise_volume_usd": 5}))
    result = runner.invoke(app, ["viability", "--figures", str(bad)])
    assert result.exit_code == 2 and "cannot exceed" in result.stderr


def test_defaults_lists_every_figure_with_a_source() -> None:
    data = run_json("defaults")
    assert data["gpu.rtx4090.median_usd_per_hour"] == {  # type: ignore[comparison-overlap]
        "value": 0.35,
        "unit": "$/h",
        "source": "market-facts.md: GPUs table, rtx4090 marketplace median $/h",
    }
    assert all(v["source"] for v in data.values())  # type: ignore[index]
