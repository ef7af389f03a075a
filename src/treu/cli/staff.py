"""``treu staff``: accounts of the admin console, for the person who runs the server
(the first admin cannot be made in a console nobody can sign in to yet)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from treu import cli
from treu.cli import fail, friendly, staff_app

ROLES = "admin, marketing, support or analyst"
ACTOR = "cli"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


@staff_app.command("create")
@friendly
def staff_create(
    email: Annotated[str, typer.Option(help="The person's e-mail address (their sign-in).")],
    role: Annotated[str, typer.Option(help=f"One of {ROLES}.")],
) -> None:
    """Create a staff account and print its one-time password (changed at first sign-in)."""
    from treu.staff.service import staff

    with cli.open_database().unit_of_work() as session:
        user, password = staff.create(session, email=email, role=role, actor=ACTOR)
        address, granted = user.email, user.role
    cli.console.print(password, highlight=False)
    cli.err.print(
        f"Created {escape(address)} ({granted}). The one-time password above is shown only "
        "once; it must be changed at the first sign-in.",
        highlight=False,
    )


@staff_app.command("list")
@friendly
def staff_list() -> None:
    """List staff accounts (never their passwords)."""
    from treu.staff.service import staff

    with cli.open_database().unit_of_work(write=False) as session:
        users = staff.list(session)
        rows = [
            (
                u.email,
                u.role,
                "yes" if u.totp_enabled else "no",
                _when(u.last_sign_in_at),
                "disabled" if u.disabled_at else ("new" if u.must_change_password else "active"),
            )
            for u in users
        ]
    if not rows:
        cli.console.print("No staff accounts yet. Create one with `treu staff create`.")
        return
    table = Table()
    for column in ("e-mail", "role", "second factor", "last sign-in", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(value) for value in row))
    cli.console.print(table)


@staff_app.command("reset-password")
@friendly
def staff_reset_password(
    email: Annotated[str, typer.Argument(help="The account's e-mail address.")],
) -> None:
    """Give an account a new one-time password (and unlock it)."""
    from treu.staff.service import staff

    with cli.open_database().unit_of_work() as session:
        user = staff.by_email(session, email)
        password = staff.reset_password(session, user, actor=ACTOR)
    cli.console.print(password, highlight=False)
    cli.err.print("The one-time password above is shown only once.", highlight=False)


@staff_app.command("set-role")
@friendly
def staff_set_role(
    email: Annotated[str, typer.Argument(help="The account's e-mail address.")],
    role: Annotated[str, typer.Option(help=f"One of {ROLES}.")],
) -> None:
    """Change an account's role."""
    from treu.staff.service import staff

    with cli.open_database().unit_of_work() as session:
        staff.set_role(session, staff.by_email(session, email), role=role, actor=ACTOR)
    cli.console.print(f"{escape(email)} is now {role}.", highlight=False)


@staff_app.command("disable")
@friendly
def staff_disable(
    email: Annotated[str, typer.Argument(help="The account's e-mail address.")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable it again instead.")] = False,
) -> None:
    """Disable an account (it can no longer sign in), or enable it again."""
    from treu.staff.service import staff

    with cli.open_database().unit_of_work() as session:
        user = staff.by_email(session, email)
        if enable:
            staff.enable(session, user, actor=ACTOR)
        else:
            staff.disable(session, user, actor=ACTOR)
    cli.console.print(f"{escape(email)} {'enabled' if enable else 'disabled'}.", highlight=False)


@staff_app.command("reset-second-factor")
@friendly
def staff_reset_totp(
    email: Annotated[str, typer.Argument(help="The account's e-mail address.")],
) -> None:
    """Switch off an account's second factor (a lost phone); they set it up again."""
    from treu.staff.service import staff

    with cli.open_database().unit_of_work() as session:
        user = staff.by_email(session, email)
        if not user.totp_enabled and user.totp_secret is None:
            raise fail(f"{email} has no second factor")
        staff.disable_totp(session, user, actor=ACTOR)
    cli.console.print(f"The second factor of {escape(email)} is off.", highlight=False)
