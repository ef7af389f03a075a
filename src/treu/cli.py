"""The ``treu`` command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from treu.config import get_settings
from treu.errors import TreuError

app = typer.Typer(help="Treu, the open-source loyalty platform.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]Error:[/] {message}")
    raise typer.Exit(code)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (Alembic)."""
    from treu.migrations import upgrade

    url = get_settings().database_url
    upgrade(url)
    console.print(f"[green]Database is up to date[/] ({_safe(url)})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
) -> None:
    """Serve the HTTP API (docs at /docs)."""
    import uvicorn

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    console.print(f"Treu serves on [bold]http://{host}:{port}[/] — API docs at /docs")
    uvicorn.run(
        "treu.api.app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers or settings.workers,
        log_level=settings.log_level,
        access_log=False,
    )


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    try:
        app()
    except TreuError as exc:
        err.print(f"[bold red]Error:[/] {exc.detail}")
        sys.exit(1)


if __name__ == "__main__":
    main()
