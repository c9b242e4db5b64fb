"""What every command shares: the home folder, the client, JSON output, errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from gpudepin.client import Client
from gpudepin.client.sdk import local_network
from gpudepin.core.errors import GpudepinError
from gpudepin.identity import load_or_create_key
from gpudepin.settings import resolve_home

console = Console()
err_console = Console(stderr=True)


class ErrorHandlingGroup(TyperGroup):
    """Turns every gpudepin error into one readable line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GpudepinError as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            err_console.print(f"[red]error:[/red] {exc.message}{hint}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None


@dataclass
class State:
    home_opt: Path | None
    coordinator: str | None
    key: str

    @property
    def home(self) -> Path:
        return resolve_home(self.home_opt)

    def client(self, key: str | None = None) -> Client:
        """A client for --coordinator, or for the local network in the home folder."""
        url = self.coordinator or local_network(self.home)["api_url"]
        return Client(url, load_or_create_key(self.home, key or self.key))


def state(ctx: typer.Context) -> State:
    st: State = ctx.find_root().obj
    return st


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
