"""`ketamine-fhir mappings show | diff | export-conceptmaps` and `ketamine-fhir map`: the mapping specifications."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from service.domain.kinds import KINDS
from service.errors import Unprocessable


@click.group()
def mappings() -> None:
    """The mapping specifications in mappings/: review, compare, export."""


@mappings.command("show")
@click.argument("kind", required=False, type=click.Choice(list(KINDS)))
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


def _mapper(factory: Any) -> Any:
    from service.mapping import MappingError
    from service.mapping.spec import SpecError

    try:
        return factory()
    except (SpecError, MappingError) as exc:
        raise click.ClickException(f"the mapping specifications do not load: {exc}") from None


@click.command("map")
@click.option("--kind", required=True, type=click.Choice(list(KINDS)))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def map_command(kind: str, file: Path, fmt: str) -> None:
    """Preview: the transaction Bundle a record FILE (JSON) becomes, and its validation outcome.

    Nothing is stored. Exit 0 when the record maps to a valid Bundle, 1 when it is refused.
    """
    from service.domain.intake import Intake
    from service.jsondoc import parse_json
    from service.mapping import map_record

    try:
        payload = parse_json(file.read_bytes(), max_depth=64)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same usage error
        raise click.UsageError(f"{file}: {exc}") from None
    try:
        checked = Intake(None).check(kind, payload)
        # the preview shows the Bundle the check would make, with its safety flags
        mapped = map_record(kind, checked.new.content, findings=checked.warnings)
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


def _refusal(exc: Unprocessable) -> str:
    lines = [exc.detail] + [f"  {i.field}: {i.message}" for i in exc.issues]
    return "\n".join(lines)
