"""`ketamine-fhir seed-demo | import`: clinic records in bulk, through the same intake as the API."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from service.cli import context
from service.domain.kinds import KINDS
from service.errors import Conflict

if TYPE_CHECKING:
    from service.importer import Progress, Report


@click.command("seed-demo")
def seed_demo() -> None:
    """Load the deterministic synthetic demo records (again: changes nothing)."""
    from service.demo import demo_records

    intake = context.runtime().intake
    records = demo_records()
    created = edited = 0
    for kind, payload in records:
        try:
            created += intake.submit(kind, payload).created
        except Conflict:  # someone changed this demo record since: theirs stays
            edited += 1
    click.echo(f"demo data: {created} records created, {len(records) - created - edited} already present, "
               f"{edited} changed since and kept")


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", required=True, type=click.Choice(list(KINDS)))
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human")
def import_(file: Path, kind: str, fmt: str) -> None:
    """Import FILE (JSON Lines, or CSV by .csv extension); valid lines are stored, errors reported."""
    from service.importer import import_file

    intake = context.runtime().intake
    bar = _progress(file) if sys.stdout.isatty() and fmt == "human" else None
    report = import_file(intake, file, kind, progress=bar)
    click.echo(render_report(report, fmt))
    sys.exit(1 if report.errors else 0)


def _progress(file: Path) -> Progress:
    return lambda rows: click.progressbar(rows, label=f"importing {file.name}")


def render_report(report: Report, fmt: str) -> str:
    """The import's report: JSON, or a line per rejected line with its fields, then the counts."""
    if fmt == "json":
        return json.dumps(report.__dict__, indent=2)
    lines = [f"line {e['line']}: {e['message']}" + "".join(f"\n    {i['field']}: {i['message']}" for i in e["issues"])
             for e in report.errors]
    lines.append(f"{report.lines} lines: {report.created} created, {report.unchanged} already present, "
                 f"{len(report.errors)} rejected, {report.warnings} warnings")
    return "\n".join(lines)
