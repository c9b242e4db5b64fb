"""Entry point of the ``gpudepin`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gpudepin import __version__
from gpudepin.cli import (
    ai,
    chain,
    economics,
    enterprise,
    jobs,
    market,
    network,
    sim,
    stats,
    verification,
    wallet,
)
from gpudepin.cli.common import ErrorHandlingGroup, State

app = typer.Typer(
    cls=ErrorHandlingGroup,
    help="gpudepin: an open GPU network. Render, infer, train, rent GPUs; pay for verified work.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            help="Home folder (keys, database, blobs). Default: $GPUDEPIN_HOME or ~/.gpudepin."
        ),
    ] = None,
    coordinator: Annotated[
        str | None,
        typer.Option(help="Coordinator URL. Default: the local network `gpudepin up` started."),
    ] = None,
    key: Annotated[str, typer.Option(help="Name of the key to act as (in HOME/keys).")] = "buyer",
) -> None:
    ctx.obj = State(home, coordinator, key)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


network.register(app)
verification.register(app)
jobs.register(app)
market.register(app)
ai.register(app)
enterprise.register(app)
wallet.register(app)
stats.register(app)
sim.register(app)
chain.register(app)
app.add_typer(
    economics.app, name="economics", help="Provider profitability, tokenomics, viability."
)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
