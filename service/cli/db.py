"""`ketamine-fhir db upgrade`: the database schema, migrated with Alembic."""
from __future__ import annotations

import click

from service.cli import context


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration (idempotent)."""
    from service.store.migrate import current_revision, upgrade

    runtime = context.runtime(migrated=False)
    engine = runtime.engine
    upgrade(engine)
    runtime.endpoints.import_declared()  # KFHIR_ENDPOINTS_FILE, when the database could not take it at start-up
    click.echo(f"database at revision {current_revision(engine)}: {engine.url.render_as_string()}")
