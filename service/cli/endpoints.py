"""`ketamine-fhir endpoints add | list | disable | enable | import`: the EHR endpoints in the database."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from service.cli import context
from service.domain.kinds import NAMES as KINDS
from service.errors import Conflict, NotFound
from service.exchange.client import MODES
from service.exchange.endpoints import AUTH_TYPES, PRESETS, Endpoint, EndpointError, load, parse


@click.group()
def endpoints() -> None:
    """EHR endpoints records are sent to, kept in the database: every process (web, worker) sees the same ones.

    Secrets are never stored: an endpoint names the environment variables that hold them, read by the worker.
    """


@endpoints.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def endpoints_list(fmt: str) -> None:
    """Every endpoint, enabled or not (names of secrets' variables only, never a secret)."""
    found = context.runtime().endpoints.all()
    if fmt == "json":
        click.echo(json.dumps([e.public() for e in found], indent=2))
        return
    if not found:
        click.echo("no endpoint (`ketamine-fhir endpoints add`, or KFHIR_ENDPOINTS_FILE imported at start-up)")
    for e in found:
        state = "enabled" if e.enabled else "disabled"
        added = f"added {e.added_at:%Y-%m-%d %H:%M} by {e.added_by}" if e.added_at else ""
        click.echo(f"{e.name}\t{state}\t{e.base_url}\t{e.mode}\t{e.auth.get('type', 'none')}\t"
                   f"{' '.join(e.kinds)}\t{added}")


@endpoints.command("add")
@click.argument("name")
@click.option("--base-url", default=None, help="The FHIR server's base URL (…/fhir); a --preset gives one.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None, help="A public sandbox's settings.")
@click.option("--auth", "auth_type", type=click.Choice(AUTH_TYPES), default=None, help="How to authenticate.")
@click.option("--user", default=None, help="basic: the user name.")
@click.option("--password-env", default=None, help="basic: the environment variable holding the password.")
@click.option("--token-env", default=None, help="bearer: the environment variable holding the token.")
@click.option("--client-id", default=None, help="smart-backend: the client id the EHR registered.")
@click.option("--key-file-env", default=None,
              help="smart-backend: the environment variable naming the private key's PEM file.")
@click.option("--kid", default=None, help="smart-backend: the key id (default: derived from the key).")
@click.option("--scope", default=None, help="smart-backend: the scopes asked for.")
@click.option("--token-url", default=None, help="smart-backend: the token endpoint (default: from SMART discovery).")
@click.option("--mode", type=click.Choice(MODES), default=None, help="transaction (default), batch or conditional.")
@click.option("--kinds", multiple=True, type=click.Choice(KINDS), help="Record kinds sent (repeatable; default all).")
@click.option("--max-entries", type=int, default=None, help="Most entries a Bundle (default 100).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Seconds a request may take (default 30).")
@click.option("--note", default=None, help="A note shown beside it.")
@click.option("--disabled", is_flag=True, help="Add it disabled (nothing is queued for it until enabled).")
def endpoints_add(name: str, disabled: bool, **given: Any) -> None:
    """Add endpoint NAME; records stored from now on are queued for it (earlier ones: `push --all`)."""
    auth = {"type": given.pop("auth_type")} if given.get("auth_type") else None
    for key in ("user", "password_env", "token_env", "client_id", "key_file_env", "kid", "scope", "token_url"):
        value = given.pop(key)
        if value is not None:
            if auth is None:
                raise click.UsageError(f"--{key.replace('_', '-')} needs --auth")
            auth[key] = value
    item = {"name": name, **{k: v for k, v in given.items() if v not in (None, ())}, "enabled": not disabled}
    if auth is not None:
        item["auth"] = auth
    try:
        endpoint = parse(item, "endpoints add", dict(os.environ))
        added = context.runtime().endpoints.add(endpoint, "cli")
    except (EndpointError, Conflict) as exc:
        raise click.UsageError(getattr(exc, "detail", str(exc))) from None
    click.echo(f"endpoint {added.name} added ({'enabled' if added.enabled else 'disabled'}): {added.base_url}")
    _warn_missing_secrets(added)


@endpoints.command("disable")
@click.argument("name")
def endpoints_disable(name: str) -> None:
    """Queue nothing new for NAME; its queued jobs wait and workers leave them (`enable` sends them)."""
    _set(name, False)


@endpoints.command("enable")
@click.argument("name")
def endpoints_enable(name: str) -> None:
    """Queue records for NAME again; records stored while it was disabled go with `push --all`."""
    _set(name, True)


def _set(name: str, enabled: bool) -> None:
    try:
        context.runtime().endpoints.set_enabled(name, enabled)
    except NotFound as exc:
        raise click.UsageError(exc.detail) from None
    click.echo(f"endpoint {name} {'enabled' if enabled else 'disabled'}")


@endpoints.command("import")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def endpoints_import(path: Path | None) -> None:
    """Import an endpoints file (default KFHIR_ENDPOINTS_FILE): new endpoints added, changed ones updated,
    none re-enabled nor removed. Importing the same file again changes nothing."""
    settings = context.settings()
    if path is None and not settings.endpoints_file:
        raise click.UsageError("name a file, or set KFHIR_ENDPOINTS_FILE")
    chosen = path or Path(settings.endpoints_file)
    try:
        declared = load(chosen)
    except EndpointError as exc:
        raise click.UsageError(str(exc)) from None
    registry = context.runtime().endpoints
    done = registry.import_(declared, f"file {chosen.name}")
    if registry.started is not None and Path(settings.endpoints_file or "") == chosen:
        done = registry.started  # this invocation's start-up imported the same file a moment ago: what it did
    click.echo(f"{chosen}: {done.summary()}")
    for label, names in (("added", done.added), ("updated", done.updated)):
        if names:
            click.echo(f"  {label}: {', '.join(names)}")


def _warn_missing_secrets(endpoint: Endpoint) -> None:
    """Said at once, not at the worker's start: a variable named for a secret is unset in this shell."""
    missing = [str(v) for k, v in endpoint.auth.items() if k.endswith("_env") and not os.environ.get(str(v))]
    if missing:
        click.echo(f"note: {', '.join(missing)} not set here; the worker's environment must hold it", err=True)
