"""`ketamine-fhir clients add | list | revoke | demo-key`: API clients and their bearer keys."""
from __future__ import annotations

import json

import click

from service.cli import context
from service.security.keys import ApiClients, ClientError

#: what `clients demo-key` grants: everything, so a first `make run` can try every endpoint
DEMO_SCOPES = ["system/*.cruds", "system/ketamine-records.cruds", "system/ketamine-exchange.cruds",
               "system/AuditEvent.rs"]


@click.group()
def clients() -> None:
    """API clients: bearer keys with SMART scopes for /api/v1 and /fhir."""


def _clients() -> ApiClients:
    return ApiClients(context.runtime().engine)


@clients.command("add")
@click.argument("name")
@click.option("--scopes", required=True, multiple=True,
              help="SMART scopes, space-separated or repeated: system/*.rs, system/Patient.cruds, "
                   "system/ketamine-records.write, system/AuditEvent.rs …")
def clients_add(name: str, scopes: tuple[str, ...]) -> None:
    """Create client NAME; its key is printed once, alone on the last line (store it now)."""
    wanted = [s for group in scopes for s in group.split()]
    try:
        key = _clients().add(name, wanted)
    except ClientError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"API client {name.strip().lower()!r} created with scopes {' '.join(wanted)}; its key "
               "(shown once, send it as Authorization: Bearer KEY):")
    click.echo(key)


@clients.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def clients_list(fmt: str) -> None:
    """Every client with its scopes and state (never a key)."""
    found = _clients().list()
    if fmt == "json":
        click.echo(json.dumps([{"name": c.name, "scopes": list(c.scopes), "created_at": c.created_at.isoformat() + "Z",
                                "revoked_at": c.revoked_at.isoformat() + "Z" if c.revoked_at else None}
                               for c in found], indent=2))
        return
    for c in found:
        state = f"revoked {c.revoked_at:%Y-%m-%d %H:%M}" if c.revoked_at else "active"
        click.echo(f"{c.name}\t{state}\t{' '.join(c.scopes)}")


@clients.command("revoke")
@click.argument("name")
def clients_revoke(name: str) -> None:
    """Revoke NAME's key: refused from the next request on."""
    if not _clients().revoke(name):
        raise click.UsageError(f"no active client named {name.strip().lower()!r}")
    click.echo(f"client {name.strip().lower()!r} revoked")


@clients.command("demo-key")
def clients_demo_key() -> None:
    """First run only: when no API client exists, create `demo` with every scope and print its key once."""
    registry = _clients()
    if registry.list():
        click.echo("an API client exists already; nothing changed (`ketamine-fhir clients add` makes another)")
        return
    key = registry.add("demo", DEMO_SCOPES)
    click.echo("API client `demo` created with every scope; its key (shown once, send it as "
               "Authorization: Bearer KEY):")
    click.echo(key)
