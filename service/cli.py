"""Command line: ketamine-fhir serve | db upgrade | import | seed-demo. Exit 0 ok, 1 negative result, 2 usage."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from service.config import Settings
from service.errors import ConfigError, Conflict
from service.runtime import Runtime


def _settings() -> Settings:
    try:
        return Settings.load()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _runtime() -> Runtime:
    """The runtime of a command that reads or writes records: the schema must be current."""
    from service.store.migrate import current_revision, head_revision

    runtime = Runtime.build(_settings())
    try:
        revision = current_revision(runtime.engine)
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot reach the database: {type(exc).__name__}") from None
    if revision != head_revision():
        raise click.UsageError("the database is not migrated: run `ketamine-fhir db upgrade` first")
    return runtime


@click.group()
def cli() -> None:
    """Ketamine FHIR Bridge: ketamine therapy records to FHIR R4 and back."""


@cli.command()
@click.option("--host", default=None, help="Interface to bind (default KFHIR_HOST or 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default KFHIR_PORT or 8080).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the API on HOST:PORT (development server; use gunicorn in production)."""
    from werkzeug.serving import run_simple

    from service import create_app

    settings = _settings()
    settings = settings.replace(host=host or settings.host, port=port or settings.port)
    app = create_app(settings)
    base = f"http://{settings.host}:{settings.port}"
    click.echo(f"Ketamine FHIR Bridge on {base}")
    click.echo(f"  health:     {base}/health")
    click.echo(f"  domain API: {base}/api/v1/treatment-plans (also administrations, adverse-events, assessments)")
    run_simple(settings.host, settings.port, app, threaded=True)


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration (idempotent)."""
    from service.store.migrate import current_revision, upgrade

    runtime = Runtime.build(_settings())
    upgrade(runtime.engine)
    click.echo(f"database at revision {current_revision(runtime.engine)}: {runtime.engine.url.render_as_string()}")


@cli.command("seed-demo")
def seed_demo() -> None:
    """Load the deterministic synthetic demo records (again: changes nothing)."""
    from service.demo import demo_records

    runtime = _runtime()
    records = demo_records()
    created = edited = 0
    for kind, payload in records:
        try:
            created += runtime.intake.submit(kind, payload).created
        except Conflict:  # someone changed this demo record since: theirs stays
            edited += 1
    click.echo(f"demo data: {created} records created, {len(records) - created - edited} already present, "
               f"{edited} changed since and kept")


@cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", required=True,
              type=click.Choice(["administration", "treatment-plan", "adverse-event", "assessment"]))
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human")
def import_(file: Path, kind: str, fmt: str) -> None:
    """Import FILE (JSON Lines, or CSV by .csv extension); valid lines are stored, errors reported."""
    from service.importer import import_file, render_report

    report = import_file(_runtime().intake, file, kind, progress=sys.stdout.isatty() and fmt == "human")
    click.echo(render_report(report, fmt))
    sys.exit(1 if report.errors else 0)


@cli.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--profile", default=None, help="Validate against this profile URL instead of meta.profile.")
@click.option("--ig", "igs", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Extra conformance resources: a package .tgz, a folder or a single JSON file (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def validate_command(paths: tuple[Path, ...], profile: str | None, igs: tuple[Path, ...], fmt: str) -> None:
    """Validate FHIR JSON files (or folders of them) against R4 and the ketamine profiles."""
    from service.validation.cli import run_validate

    sys.exit(run_validate(list(paths), profile, list(igs), fmt))


@cli.group()
def profiles() -> None:
    """The implementation guide in profiles/: snapshots and the FHIR NPM package."""


def _profiles_option(f: Any) -> Any:
    return click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="The profiles folder (default: the one the service ships).")(f)


@profiles.command("build")
@_profiles_option
def profiles_build(folder: Path | None) -> None:
    """Regenerate every snapshot (and the ImplementationGuide) from the differentials."""
    from service.conformance.ig import build
    from service.conformance.snapshot import SnapshotError
    from service.resources import profiles_dir

    try:
        written = build(folder or profiles_dir())
    except SnapshotError as exc:
        raise click.ClickException(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"{len(written)} files changed")


@profiles.command("check")
@_profiles_option
def profiles_check(folder: Path | None) -> None:
    """Exit 1 if any generated file (snapshot, ImplementationGuide) is stale."""
    from service.conformance.ig import stale
    from service.resources import profiles_dir

    outdated = stale(folder or profiles_dir())
    for path in outdated:
        click.echo(f"stale: {path} (run `ketamine-fhir profiles build`)")
    sys.exit(1 if outdated else 0)


@profiles.command("package")
@_profiles_option
@click.option("--dist", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"), show_default=True)
def profiles_package(folder: Path | None, dist: Path) -> None:
    """Write dist/<name>-<version>.tgz, the IG as a FHIR NPM package."""
    from service.conformance.ig import pack
    from service.resources import profiles_dir

    click.echo(str(pack(folder or profiles_dir(), dist)))


def main() -> None:
    cli(prog_name="ketamine-fhir")
