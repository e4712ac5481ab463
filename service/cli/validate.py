"""`ketamine-fhir validate`: files or folders in, one OperationOutcome per file out.

Exit status: 0 no errors, 1 some error, 2 a bad path, --ig or --profile.
"""
from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from service.conformance.package import Resource
    from service.fhirjson import Finding
    from service.validation.engine import Validator

MAX_DEPTH = 64


@click.command("validate")
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
    sys.exit(run_validate(list(paths), profile, list(igs), fmt, must_support))


def run_validate(paths: list[Path], profile: str | None, igs: list[Path], fmt: str, must_support: bool = False) -> int:
    """Exit status: 0 no errors, 1 some error, 2 a bad --ig or --profile. `must_support` also reports, as
    information, mustSupport elements of the profiles that the resource leaves out."""
    from service.conformance.definitions import load
    from service.fhirjson import has_errors, operation_outcome
    from service.validation import ours
    from service.validation.engine import UnknownProfile

    validator = ours(load().with_own([*load().own.values(), *_extra(igs)]))
    try:
        if profile:
            validator.plan(profile)  # held with a snapshot, or one generated from its differential
    except UnknownProfile:
        raise click.UsageError(f"unknown profile {profile}") from None
    files = _files(paths)
    if not files:
        raise click.UsageError("no .json files to validate in " + ", ".join(str(p) for p in paths))
    results = [(path, _findings(validator, path, profile, must_support)) for path in files]
    if fmt == "json":
        outcomes = [operation_outcome(f) for _, f in results]
        doc: Any = outcomes[0] if len(outcomes) == 1 else {
            "resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": path.resolve().as_uri(), "resource": o} for (path, _), o in zip(results, outcomes,
                                                                                                  strict=True)]}
        click.echo(json.dumps(doc, indent=2))
    else:
        for path, findings in results:
            errors = sum(f.severity in ("error", "fatal") for f in findings)
            click.echo(f"{path}: {'INVALID' if errors else 'valid'} ({errors} errors, {len(findings) - errors} other)")
            for f in findings:
                at = f" [line {f.line}, col {f.column}]" if f.line is not None else ""
                click.echo(f"  {f.severity:11} {f.expression}: {f.message}{at}")
    return 1 if any(has_errors(f) for _, f in results) else 0


def _findings(validator: Validator, path: Path, profile: str | None, must_support: bool = False) -> list[Finding]:
    from service.errors import RequestError
    from service.fhirjson import Finding
    from service.jsondoc import parse_json
    from service.validation.positions import locate, root_name

    text = path.read_bytes()
    try:
        resource = parse_json(text, MAX_DEPTH)
    except RequestError as exc:  # not JSON (400), or JSON no store could hold (a NUL: 422)
        return [Finding("fatal", "structure", "$this", exc.detail)]
    return locate(validator.validate(resource, profile, must_support=must_support),
                  text.decode("utf-8", "replace"), root_name(resource))


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        out += sorted(path.rglob("*.json")) if path.is_dir() else [path]
    return out


def _extra(igs: list[Path]) -> list[Resource]:
    from service.conformance.package import CONFORMANCE_TYPES, Package, read_folder

    out: list[Resource] = []
    for ig in igs:
        try:
            if ig.is_dir():
                out += read_folder(ig)
            elif ig.suffix == ".tgz":
                package = Package.from_tgz(ig)
                out += [r for r in package.resources() if r.get("resourceType") in CONFORMANCE_TYPES]
            else:
                doc = json.loads(ig.read_text(encoding="utf-8"))
                if not isinstance(doc, dict) or doc.get("resourceType") not in CONFORMANCE_TYPES:
                    raise click.UsageError(f"--ig {ig}: not a conformance resource")
                out.append(doc)
        except (OSError, ValueError, KeyError, AttributeError, TypeError, tarfile.TarError) as exc:
            raise click.UsageError(f"--ig {ig}: {exc}") from None
    return out
