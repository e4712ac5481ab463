"""Command line: ketamine-fhir serve | db upgrade | import | seed-demo | validate | profiles | mappings | map.

Exit 0 ok, 1 negative result, 2 usage.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from service.app.runtime import Runtime
from service.config import Settings
from service.errors import ConfigError, Conflict


def _settings() -> Settings:
    from service.web import logs

    try:
        settings = Settings.load()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    logs.configure(settings.log_level)  # the same PHI-safe JSON lines as the web processes
    return settings


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
@click.option("--production", is_flag=True,
              help="gunicorn with KFHIR_WORKERS workers, KFHIR_REQUEST_TIMEOUT, graceful stop on SIGTERM.")
def serve(host: str | None, port: int | None, production: bool) -> None:
    """Serve the API on HOST:PORT (the development server, or gunicorn with --production)."""
    from werkzeug.serving import run_simple

    from service import create_app

    settings = _settings()
    settings = settings.replace(host=host or settings.host, port=port or settings.port)
    if production:
        from service.web.serving import serve as serve_production

        click.echo(f"Ketamine FHIR Bridge (gunicorn, {settings.workers} workers) on {settings.host}:{settings.port}")
        serve_production(settings)
        return
    app = create_app(settings)
    base = f"http://{settings.host}:{settings.port}"
    click.echo(f"Ketamine FHIR Bridge on {base}")
    click.echo(f"  health:     {base}/health")
    click.echo(f"  domain API: {base}/api/v1/treatment-plans (also administrations, adverse-events, assessments)")
    click.echo(f"  FHIR R4:    {base}/fhir/metadata")
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
@click.option("--must-support", is_flag=True,
              help="Also report, as information, mustSupport elements of the profiles that a resource leaves out.")
def validate_command(paths: tuple[Path, ...], profile: str | None, igs: tuple[Path, ...], fmt: str,
                     must_support: bool) -> None:
    """Validate FHIR JSON files (or folders of them) against R4 and the ketamine profiles."""
    from service.validation.cli import run_validate

    sys.exit(run_validate(list(paths), profile, list(igs), fmt, must_support))


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


KINDS = ["treatment-plan", "administration", "adverse-event", "assessment"]


@cli.group()
def mappings() -> None:
    """The mapping specifications in mappings/: review, compare, export."""


@mappings.command("show")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table")
def mappings_show(kind: str | None, fmt: str) -> None:
    """Print the rules of KIND (default: every kind): record field → FHIR element, terminology, why."""
    from service.mapping import default_mapper
    from service.mapping.review import as_json, as_markdown, as_table

    mapper = _mapper(default_mapper)
    specs = [mapper.specs[kind]] if kind else [mapper.specs[k] for k in KINDS]
    render = {"table": as_table, "markdown": as_markdown, "json": as_json}[fmt]
    click.echo(render(specs, mapper.concepts))


@mappings.command("diff")
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def mappings_diff(old: Path, new: Path) -> None:
    """What changed between two versions OLD and NEW of a mapping file, rule by rule.

    For example: git show HEAD~3:mappings/administration.yaml > old.yaml, then diff old.yaml against
    mappings/administration.yaml. Exit 0 when they map the same way, 1 when anything changed.
    """
    from service.mapping.review import diff, render_diff
    from service.mapping.spec import SpecError, folder, load_file

    templates_from = folder() / "people.yaml"
    try:
        before, after = (load_file(p, _templates(templates_from)) for p in (old, new))
    except SpecError as exc:
        raise click.UsageError(str(exc)) from None
    if before.kind != after.kind:
        raise click.UsageError(f"{old} maps {before.kind} but {new} maps {after.kind}")
    changes = diff(before, after)
    click.echo(render_diff(changes))
    sys.exit(1 if changes else 0)


def _templates(path: Path) -> dict[str, Any]:
    from service.mapping.spec import _templates as read

    return read(path)


@mappings.command("export-conceptmaps")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("conceptmaps"),
              show_default=True)
def mappings_export_conceptmaps(out: Path) -> None:
    """Write every ConceptMap the mappings use as a FHIR ConceptMap resource (one JSON file each)."""
    from service.mapping import default_mapper
    from service.mapping.review import concept_maps

    mapper = _mapper(default_mapper)
    out.mkdir(parents=True, exist_ok=True)
    found = concept_maps(mapper)
    for resource in found:
        path = out / f"ConceptMap-{resource['id']}.json"
        path.write_text(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        click.echo(f"wrote {path}")
    click.echo(f"{len(found)} ConceptMaps")


@cli.command("map")
@click.option("--kind", required=True, type=click.Choice(KINDS))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def map_command(kind: str, file: Path, fmt: str) -> None:
    """Preview: the transaction Bundle a record FILE (JSON) becomes, and its validation outcome.

    Nothing is stored. Exit 0 when the record maps to a valid Bundle, 1 when it is refused.
    """
    from service.domain.intake import Intake
    from service.errors import Unprocessable
    from service.jsondoc import parse_json
    from service.mapping import map_record

    try:
        payload = parse_json(file.read_bytes(), max_depth=64)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same usage error
        raise click.UsageError(f"{file}: {exc}") from None
    try:
        checked = Intake(None).check(kind, payload)
        mapped = map_record(kind, checked.new.content)  # the preview shows the Bundle the check would make
    except Unprocessable as exc:
        body = {"detail": exc.detail, "errors": [i.as_dict() for i in exc.issues], **exc.extra}
        click.echo(json.dumps(body, indent=2, ensure_ascii=False) if fmt == "json" else _refusal(exc))
        sys.exit(1)
    if fmt == "json":
        click.echo(json.dumps({"bundle": mapped.bundle, "outcome": mapped.outcome, "record_warnings":
                               checked.warnings}, indent=2, ensure_ascii=False))
        return
    click.echo(json.dumps(mapped.bundle, indent=2, ensure_ascii=False))
    issues = mapped.outcome["issue"]
    click.echo(f"\n{len(mapped.bundle['entry'])} resources; validation: "
               f"{sum(i['severity'] in ('error', 'fatal') for i in issues)} errors, "
               f"{sum(i['severity'] == 'warning' for i in issues)} warnings", err=True)
    for warning in checked.warnings:
        click.echo(f"record warning: {warning['field']}: {warning['message']}", err=True)


@cli.command("sandbox-check")
@click.option("--base-url", required=True, help="The FHIR server's base URL (…/fhir, …/baseR4).")
@click.option("--bearer-token", default=None, help="A bearer token, for sandboxes that want one.")
@click.option("--mode", type=click.Choice(["transaction", "batch", "conditional"]), default="transaction",
              show_default=True, help="How records are sent (conditional: one request per resource).")
@click.option("--cleanup", is_flag=True, help="Delete what was written at the end.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as FILE.html or FILE.json.")
def sandbox_check(base_url: str, bearer_token: str | None, mode: str, cleanup: bool,
                  report_path: Path | None) -> None:
    """Run a scripted exchange with a FHIR server and print each step; exit 0 only if all pass.

    Pushes synthetic records (patient MRN SANDBOX-0001) of a treatment plan, a dosing session with
    vital signs and scores, and an adverse event; reads everything back; searches with paging.
    """
    from service.exchange.auth import Bearer
    from service.exchange.client import FhirClient
    from service.exchange.sandbox import run

    client = FhirClient(base_url, Bearer(bearer_token) if bearer_token else None)
    report = run(client, mode, cleanup)
    click.echo(report.table())
    if report_path is not None:
        text = report.as_html() if report_path.suffix.lower() in (".html", ".htm") else report.as_json()
        report_path.write_text(text, encoding="utf-8")
        click.echo(f"report: {report_path}", err=True)
    sys.exit(0 if report.passed else 1)


@cli.group()
def keys() -> None:
    """Keys for SMART Backend Services authentication to EHRs."""


@keys.command("generate")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the private key (PEM); refused if the file exists.")
@click.option("--algorithm", type=click.Choice(["RS384", "ES384"]), default="RS384", show_default=True)
def keys_generate(out: Path, algorithm: str) -> None:
    """Write a new private key and print the public JWKS to register with the EHR."""
    from service.exchange.auth import generate_key

    if out.exists():
        raise click.UsageError(f"{out} exists; choose another path (keys are never overwritten)")
    pem, public = generate_key(algorithm)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600)
    out.write_bytes(pem)
    click.echo(f"wrote the private key to {out} (keep it secret); register this public JWKS with the EHR:",
               err=True)
    click.echo(json.dumps(public, indent=2))


def _refusal(exc: Any) -> str:
    lines = [exc.detail] + [f"  {i.field}: {i.message}" for i in exc.issues]
    return "\n".join(lines)


def _mapper(factory: Any) -> Any:
    from service.mapping import MappingError
    from service.mapping.spec import SpecError

    try:
        return factory()
    except (SpecError, MappingError) as exc:
        raise click.ClickException(f"the mapping specifications do not load: {exc}") from None


@cli.group()
def admin() -> None:
    """Accounts of the admin console at /admin."""


def _accounts() -> Any:
    from service.admin.accounts import Accounts

    return Accounts(_runtime().engine)


def _new_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")
    return password


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
    click.echo(f"password of {username.strip().lower()!r} changed; its sessions ended")


@admin.command("unlock")
@click.argument("username")
def admin_unlock(username: str) -> None:
    """Lift the lockout that failed sign-ins put on USERNAME."""
    found = _accounts().unlock(username)
    click.echo(f"{username.strip().lower()!r} unlocked" if found else f"{username.strip().lower()!r} was not locked")


@admin.command("list-users")
def admin_list_users() -> None:
    """The admin account names, one a line."""
    for name in _accounts().usernames():
        click.echo(name)


@admin.command("demo-user")
def admin_demo_user() -> None:
    """First run only: when no admin account exists, create `admin` with a random password and print it once."""
    import secrets

    accounts = _accounts()
    if accounts.exists():
        click.echo("an admin account exists already; nothing changed (`ketamine-fhir admin set-password` resets one)")
        return
    password = secrets.token_urlsafe(15)
    accounts.create("admin", password)
    click.echo(f"admin console: sign in as `admin` with password {password} (shown once; "
               "change it with `ketamine-fhir admin set-password admin`)")


@cli.group()
def clients() -> None:
    """API clients: bearer keys with SMART scopes for /api/v1 and /fhir."""


def _clients() -> Any:
    from service.security.keys import ApiClients

    return ApiClients(_runtime().engine)


#: what `clients demo-key` grants: everything, so a first `make run` can try every endpoint
DEMO_SCOPES = ["system/*.cruds", "system/ketamine-records.cruds", "system/ketamine-exchange.cruds",
               "system/AuditEvent.rs"]


@clients.command("add")
@click.argument("name")
@click.option("--scopes", required=True, multiple=True,
              help="SMART scopes, space-separated or repeated: system/*.rs, system/Patient.cruds, "
                   "system/ketamine-records.write, system/AuditEvent.rs …")
def clients_add(name: str, scopes: tuple[str, ...]) -> None:
    """Create client NAME; its key is printed once, alone on the last line (store it now)."""
    from service.security.keys import ClientError

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


def _add_exchange_commands() -> None:
    from service.exchange.commands import pull, push, worker

    for command in (worker, push, pull):
        cli.add_command(command)


_add_exchange_commands()


def main() -> None:
    cli(prog_name="ketamine-fhir")
