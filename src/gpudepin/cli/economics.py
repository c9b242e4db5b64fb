"""`gpudepin economics ...`: profitability, tokenomics and the viability scorecard.

Mounted by the main CLI with ``app.add_typer(economics.app, name="economics")``. Every
command prints a Rich table, or JSON with ``--json``; a bad figure is one line on stderr
and exit status 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gpudepin.core.errors import GpudepinError, InvalidInput, NotFound, Unavailable
from gpudepin.economics.defaults import (
    DEFAULT_FEE,
    Sourced,
    all_defaults,
    gpu_defaults,
    profit_defaults,
)
from gpudepin.economics.profit import ProfitReport, profit, profit_chart, sensitivity
from gpudepin.economics.tokenomics import (
    DecliningSchedule,
    EmissionSchedule,
    RenderLikeSchedule,
    Scenario,
    TokenomicsParams,
    simulate,
    tokenomics_chart,
)
from gpudepin.economics.viability import NetworkFigures, Status, scorecard

app = typer.Typer(
    help="Provider profitability, burn-and-mint tokenomics and the network viability scorecard.",
    no_args_is_help=True,
)

GIVEN = "given"
# Extra income and extra costs are the provider's own: none is assumed unless given.
NOT_GIVEN_ZERO = Sourced(0.0, "$/day", "not given: none assumed")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn a gpudepin error into one readable line and exit status 2, no traceback."""
    try:
        yield
    except GpudepinError as exc:
        msg = exc.message
        typer.echo(f"error: {msg} ({exc.hint})" if exc.hint else f"error: {msg}", err=True)
        raise typer.Exit(2) from None


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, allow_nan=False))


def _usd(x: float) -> str:
    x = round(x, 2) + 0.0  # no "-$0.00" for a cost of zero
    return f"-${-x:,.2f}" if x < 0 else f"${x:,.2f}"


def _resolve(
    given: dict[str, float | None], defaults: dict[str, Sourced | None]
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Each input's value and where it comes from: the user, a default's source, or none."""
    values: dict[str, float | None] = {}
    sources: dict[str, str] = {}
    for key, value in given.items():
        default = defaults.get(key)
        if value is not None:
            values[key], sources[key] = value, GIVEN
        elif default is not None:
            values[key], sources[key] = default.value, default.source
        else:
            values[key], sources[key] = None, "no figure in market-facts.md"
    return values, sources


def _grid(gpu: str, utilization: float, price: float) -> tuple[list[float], list[float]]:
    d = gpu_defaults(gpu)
    utilizations = sorted({0.1, 0.25, 0.5, 0.75, 1.0, utilization})
    if d.price_low_usd_per_hour and d.price_high_usd_per_hour:
        prices = {d.price_low_usd_per_hour.value, d.median_usd_per_hour.value}
        prices.add(d.price_high_usd_per_hour.value)
    else:
        prices = {price / 2, price * 2}
    return utilizations, sorted(prices | {price})


@app.command("profit")
def profit_command(
    gpu: Annotated[str, typer.Option(help="GPU class, e.g. rtx4090, a100-80g.")],
    utilization: Annotated[
        float | None, typer.Option(help="Share of hours rented, 0..1 (default 0.5).")
    ] = None,
    price: Annotated[
        float | None, typer.Option(help="Rental price, USD per GPU-hour (default: median).")
    ] = None,
    fee: Annotated[
        float | None, typer.Option(help="Marketplace fee, share of gross (default 0.05).")
    ] = None,
    electricity: Annotated[
        float | None, typer.Option(help="Electricity price, USD per kWh.")
    ] = None,
    place: Annotated[
        str | None,
        typer.Option(help="Take electricity from: us-home, us-industrial, eu-home, germany, ..."),
    ] = None,
    pue: Annotated[
        float | None, typer.Option(help="Power usage effectiveness (1 at home, 1.56 datacenter).")
    ] = None,
    token_rewards: Annotated[
        float | None, typer.Option(help="Token rewards, USD per day (emissions, incentives).")
    ] = None,
    other_opex: Annotated[
        float | None,
        typer.Option(help="Other running costs, USD per day (internet, colocation)."),
    ] = None,
    capex: Annotated[
        float | None, typer.Option(help="What the GPU cost, USD (default: purchase price).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    chart: Annotated[Path | None, typer.Option(help="Write a PNG chart to this path.")] = None,
    with_sensitivity: Annotated[
        bool, typer.Option("--sensitivity", help="Add a utilization by price table.")
    ] = False,
) -> None:
    """A provider's revenue, electricity, net and payback for one GPU."""
    with _one_line_errors():
        given = {
            "utilization": utilization,
            "price_usd_per_hour": price,
            "fee": fee,
            "electricity_usd_per_kwh": electricity,
            "pue": pue,
            "capex": capex,
            "token_rewards_usd_per_day": token_rewards,
            "other_opex_usd_per_day": other_opex,
        }
        defaults: dict[str, Sourced | None] = {
            "token_rewards_usd_per_day": NOT_GIVEN_ZERO,
            "other_opex_usd_per_day": NOT_GIVEN_ZERO,
        }
        values, sources = _resolve(given, defaults | profit_defaults(gpu, place))
        if electricity is None and place is not None:
            sources["electricity_usd_per_kwh"] += f" (--place {place})"
        report = profit(
            gpu,
            utilization=_req(values["utilization"]),
            price_usd_per_hour=_req(values["price_usd_per_hour"]),
            fee=_req(values["fee"]),
            electricity_usd_per_kwh=_req(values["electricity_usd_per_kwh"]),
            token_rewards_usd_per_day=_req(values["token_rewards_usd_per_day"]),
            other_opex_usd_per_day=_req(values["other_opex_usd_per_day"]),
            pue=_req(values["pue"]),
            capex=values["capex"],
        )
        d = gpu_defaults(gpu)
        sources["wall_watts_loaded"] = d.wall_watts_loaded.source
        sources["wall_watts_idle"] = d.wall_watts_idle.source
        table = None
        if with_sensitivity:
            us, ps = _grid(gpu, report.utilization, report.price_usd_per_hour)
            table = sensitivity(
                gpu,
                us,
                ps,
                report.fee,
                report.electricity_usd_per_kwh,
                report.token_rewards_usd_per_day,
                report.other_opex_usd_per_day,
                report.pue,
            )
        chart_path = profit_chart(report, chart) if chart is not None else None

    if as_json:
        out: dict[str, Any] = report.to_dict() | {"sources": sources}
        if table is not None:
            out["sensitivity"] = table.to_dict()
        if chart_path is not None:
            out["chart"] = str(chart_path)
        _print_json(out)
        return
    console = Console()
    console.print(_inputs_table(report, sources))
    console.print(_result_table(report))
    if table is not None:
        grid = Table(title=f"Net USD/day, {report.gpu}: utilization (rows) by price $/h (columns)")
        grid.add_column("utilization", justify="right")
        for p in table.prices_usd_per_hour:
            grid.add_column(f"${p:.2f}", justify="right")
        for u, row in zip(table.utilizations, table.net_usd_per_day, strict=True):
            grid.add_row(f"{u:.0%}", *(_usd(v) for v in row))
        console.print(grid)
    if chart_path is not None:
        console.print(f"chart written to {chart_path}")


def _req(value: float | None) -> float:
    # Every profit input but capex has a default, so only a broken defaults table lands here.
    if value is None:
        raise InvalidInput("a required figure has no value and no default")
    return value


def _inputs_table(report: ProfitReport, sources: dict[str, str]) -> Table:
    rows: list[tuple[str, str, str]] = [
        ("GPU", report.gpu, GIVEN),
        ("utilization", f"{report.utilization:.0%}", sources["utilization"]),
        ("price", f"${report.price_usd_per_hour:.2f}/h", sources["price_usd_per_hour"]),
        ("fee", f"{report.fee:.2%}", sources["fee"]),
        (
            "electricity",
            f"${report.electricity_usd_per_kwh:.3f}/kWh",
            sources["electricity_usd_per_kwh"],
        ),
        ("PUE", f"{report.pue:g}", sources["pue"]),
        ("wall power loaded", f"{report.wall_watts_loaded:g} W", sources["wall_watts_loaded"]),
        ("wall power idle", f"{report.wall_watts_idle:g} W", sources["wall_watts_idle"]),
        (
            "token rewards",
            f"{_usd(report.token_rewards_usd_per_day)}/day",
            sources["token_rewards_usd_per_day"],
        ),
        (
            "other opex",
            f"{_usd(report.other_opex_usd_per_day)}/day",
            sources["other_opex_usd_per_day"],
        ),
        (
            "capex",
            _usd(report.capex_usd) if report.capex_usd is not None else "unknown",
            sources["capex"],
        ),
    ]
    table = Table(title="Inputs")
    table.add_column("input")
    table.add_column("value", justify="right")
    table.add_column("source")
    for row in rows:
        table.add_row(*row)
    return table


def _result_table(r: ProfitReport) -> Table:
    payback = f"{r.payback_months:.1f} months" if r.payback_months is not None else "never"
    rows = [
        ("gross", f"{_usd(r.gross_usd_per_day)}/day"),
        ("marketplace fee", f"{_usd(-r.fees_usd_per_day)}/day"),
        ("revenue", f"{_usd(r.revenue_usd_per_day)}/day"),
        ("token rewards", f"{_usd(r.token_rewards_usd_per_day)}/day"),
        ("energy", f"{r.kwh_per_day:.2f} kWh/day"),
        ("electricity", f"{_usd(-r.electricity_usd_per_day)}/day"),
        ("other opex", f"{_usd(-r.other_opex_usd_per_day)}/day"),
        ("net", f"{_usd(r.net_usd_per_day)}/day"),
        ("net per month", f"{_usd(r.net_usd_per_month)}/month"),
        ("net per year", f"{_usd(r.net_usd_per_year)}/year"),
        ("payback", payback),
    ]
    table = Table(title=f"{r.gpu}: provider account")
    table.add_column("item")
    table.add_column("amount", justify="right")
    for row in rows:
        table.add_row(*row)
    return table


_EMISSIONS: dict[str, Callable[[], EmissionSchedule]] = {
    "render": RenderLikeSchedule,
    "declining": DecliningSchedule,
}


def _choice(value: str, choices: list[str], what: str) -> str:
    if value.lower() not in choices:
        raise InvalidInput(
            f"unknown {what} {value!r}", hint=f"Choose one of: {', '.join(choices)}."
        )
    return value.lower()


@app.command("tokenomics")
def tokenomics_command(
    months: Annotated[int, typer.Option(help="Months to project.")] = 36,
    scenario: Annotated[str, typer.Option(help="Demand scenario: flat, growth or bust.")] = (
        "growth"
    ),
    growth: Annotated[float, typer.Option(help="Demand growth per month (growth, bust).")] = 0.05,
    initial_demand: Annotated[
        float, typer.Option(help="Buyers' demand in month 0, USD per month.")
    ] = 500_000.0,
    bust_month: Annotated[int, typer.Option(help="Month the bust scenario's demand falls.")] = 12,
    bust_drop: Annotated[float, typer.Option(help="Share of demand lost at the bust.")] = 0.8,
    fee: Annotated[
        float, typer.Option(help="Protocol's share of demand, not burned.")
    ] = DEFAULT_FEE.value,
    initial_supply: Annotated[float, typer.Option(help="Tokens in existence at month 0.")] = 500e6,
    initial_price: Annotated[float, typer.Option(help="Token price at month 0, USD.")] = 1.0,
    damping: Annotated[
        float, typer.Option(help="Share of the gap to equilibrium price closed each month.")
    ] = 0.25,
    emission: Annotated[
        str, typer.Option(help="Emission schedule: render (year 1, then lower) or declining.")
    ] = "render",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    chart: Annotated[Path | None, typer.Option(help="Write a PNG chart to this path.")] = None,
) -> None:
    """Project a burn-and-mint token month by month: burns, mints, supply, price, income."""
    with _one_line_errors():
        params = TokenomicsParams(
            months=months,
            scenario=Scenario(_choice(scenario, [s.value for s in Scenario], "scenario")),
            initial_demand_usd_per_month=initial_demand,
            growth_per_month=growth,
            bust_month=bust_month,
            bust_drop=bust_drop,
            fee=fee,
            initial_supply=initial_supply,
            initial_price_usd=initial_price,
            damping=damping,
            emission=_EMISSIONS[_choice(emission, list(_EMISSIONS), "emission schedule")](),
        )
        run = simulate(params)
        chart_path = tokenomics_chart(run, chart) if chart is not None else None

    if as_json:
        out = run.to_dict()
        if chart_path is not None:
            out["chart"] = str(chart_path)
        _print_json(out)
        return
    console = Console()
    table = Table(title=f"Burn-and-mint, {params.scenario.value} scenario ({params.emission.name})")
    for name in ("month", "demand $", "price $", "P* $", "minted", "burned", "supply"):
        table.add_column(name, justify="right")
    table.add_column("income from fees", justify="right")
    step = max(1, len(run.months) // 24)
    for m in run.months:
        if m.month % step and m is not run.months[-1]:
            continue
        income = m.provider_income_usd
        table.add_row(
            str(m.month),
            f"{m.demand_usd:,.0f}",
            f"{m.price_usd:.3f}",
            f"{m.equilibrium_price_usd:.3f}",
            f"{m.minted:,.0f}",
            f"{m.burned:,.0f}",
            f"{m.supply_end / 1e6:,.2f}M",
            f"{m.provider_income_from_fees_usd / income:.0%}",
        )
    console.print(table)
    s = run.summary()
    crossover = s["crossover_month"]
    console.print(
        f"burn/mint over the run {s['burn_mint_ratio']:.2f}; supply "
        f"{s['initial_supply']:,.0f} -> {s['final_supply']:,.0f}; "
        f"provider income from fees {s['fee_share_of_provider_income']:.0%}; "
        + (
            f"burns first reach mints in month {crossover}"
            if crossover is not None
            else "burns never reach mints"
        )
    )
    if chart_path is not None:
        console.print(f"chart written to {chart_path}")


_STATUS_STYLE = {
    Status.PASS: "green",
    Status.WARN: "yellow",
    Status.FAIL: "red",
    Status.NO_DATA: "dim",
}


def _load_figures(path: Path) -> NetworkFigures:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(
            f"no such figures file: {path}", hint="Give a NetworkFigures JSON file."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path} is not JSON: {exc}") from exc
    try:
        return NetworkFigures.from_dict(data)
    except TypeError as exc:
        raise InvalidInput(f"{path}: {exc}") from exc


def _live_figures(ctx: typer.Context) -> NetworkFigures:
    """The live network's figures over the last 30 days, from ``GET /v1/stats/viability``."""
    from gpudepin.cli.common import State

    root = ctx.find_root().obj
    st = root if isinstance(root, State) else State(None, None, "buyer")
    try:
        with st.client() as client:
            data = client.network_figures()
    except NotFound as exc:
        raise Unavailable(
            f"no live network to read figures from: {exc.message}",
            hint="start one with `gpudepin up`, pass --coordinator URL, or give --figures FILE",
        ) from None
    return NetworkFigures.from_dict(data["figures"])


@app.command("viability")
def viability_command(
    ctx: typer.Context,
    figures: Annotated[
        Path | None,
        typer.Option(help="A NetworkFigures JSON file (see --template) instead of the live net."),
    ] = None,
    template: Annotated[
        bool, typer.Option("--template", help="Print an empty NetworkFigures JSON and exit.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score the network on hardware accessibility, enterprise adoption and tokenomics."""
    if template:
        _print_json(NetworkFigures().to_dict())
        return
    with _one_line_errors():
        card = scorecard(_load_figures(figures) if figures else _live_figures(ctx))
    if as_json:
        _print_json(card.to_dict())
        return
    console = Console()
    table = Table(title=f"Viability scorecard: grade {card.grade}")
    for name in ("pillar", "metric", "value", "threshold", "status", "why"):
        table.add_column(name, justify="right" if name == "value" else "left")
    for m in card.metrics:
        style = _STATUS_STYLE[m.status]
        table.add_row(
            m.pillar.value,
            m.name,
            "-" if m.value is None else f"{m.value:.3g}",
            m.threshold,
            f"[{style}]{m.status.value}[/{style}]",
            m.explanation,
        )
    console.print(table)


@app.command("defaults")
def defaults_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every default figure the toolkit uses, with its source."""
    figures = all_defaults()
    if as_json:
        _print_json(
            {k: {"value": v.value, "unit": v.unit, "source": v.source} for k, v in figures.items()}
        )
        return
    table = Table(title="Economics defaults")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("source")
    for key, fig in figures.items():
        table.add_row(key, f"{fig.value:g} {fig.unit}".strip(), fig.source)
    Console().print(table)
