"""`ketamine-fhir admin create-user | set-password | unlock | list-users | demo-user`: admin console accounts."""
from __future__ import annotations

import secrets
import sys
from typing import TYPE_CHECKING

import click

from service.cli import context

if TYPE_CHECKING:
    from service.admin.accounts import Accounts


@click.group()
def admin() -> None:
    """Accounts of the admin console at /admin."""


def _accounts() -> Accounts:
    from service.admin.accounts import Accounts  # argon2: loaded by the commands that hash, not by every command

    runtime = context.runtime()
    return Accounts(runtime.engine, runtime.settings.workers)


def _new_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")
    return password


def _audited(username: str, change: str) -> None:
    """An account change in the audit trail, by the operating-system user who ran the command."""
    import getpass

    from service.admin.audit import record_account_change
    from service.security.audit import AuditLog
    from service.security.keys import ApiClients

    engine = context.runtime().engine
    try:
        who = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        who = "unknown"
    record_account_change(AuditLog(engine, ApiClients(engine).pepper), f"cli:{who}", username.strip().lower(), change)


@admin.command("create-user")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def admin_create_user(username: str, password_stdin: bool) -> None:
    """Create an admin account USERNAME; the password is asked for twice (or read with --password-stdin)."""
    from service.admin.accounts import AccountError

    accounts = _accounts()
    try:
        name = accounts.create(username, _new_password(password_stdin))
    except AccountError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"admin account {name!r} created")


@admin.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def admin_set_password(username: str, password_stdin: bool) -> None:
    """Give USERNAME a new password; its open sessions end."""
    from service.admin.accounts import AccountError

    accounts = _accounts()
    try:
        accounts.set_password(username, _new_password(password_stdin))
    except AccountError as exc:
        raise click.UsageError(str(exc)) from None
    _audited(username, "password changed; its sessions ended")
    click.echo(f"password of {username.strip().lower()!r} changed; its sessions ended")


@admin.command("unlock")
@click.argument("username")
def admin_unlock(username: str) -> None:
    """Lift the lockout that failed sign-ins put on USERNAME."""
    found = _accounts().unlock(username)
    if found:
        _audited(username, "unlocked")
    click.echo(f"{username.strip().lower()!r} unlocked" if found else f"{username.strip().lower()!r} was not locked")


@admin.command("list-users")
def admin_list_users() -> None:
    """The admin account names, one a line."""
    for name in _accounts().usernames():
        click.echo(name)


@admin.command("demo-user")
def admin_demo_user() -> None:
    """First run only: when no admin account exists, create `admin` with a random password and print it once."""
    accounts = _accounts()
    if accounts.exists():
        click.echo("an admin account exists already; nothing changed (`ketamine-fhir admin set-password` resets one)")
        return
    password = secrets.token_urlsafe(15)
    accounts.create("admin", password)
    click.echo(f"admin console: sign in as `admin` with password {password} (shown once; "
               "change it with `ketamine-fhir admin set-password admin`)")
