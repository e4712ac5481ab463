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

from service.validation.policy import NO_TX, SEVERITIES

if TYPE_CHECKING:
    from service.conformance.package import Resource
    from service.fhirjson import Finding
    from service.validation.engine import Validator
    from service.validation.policy import ValidationPolicy

MAX_DEPTH = 64


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--profile", default=None, help="Validate against this profile URL instead of meta.profile.")
@click.option("--ig", "igs", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Extra conformance resources: a package .tgz, a folder or a single JSON file (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--must-support", is_flag=True,
              help="Also report, as information, mustSupport elements of the profiles that a resource leaves out.")
@click.option("--unknown-profile", type=click.Choice(SEVERITIES), default="warning", show_default=True,
              help="How to report a meta.profile that is not held (the HL7 validator: warning).")
@click.option("--unknown-extension", type=click.Choice(SEVERITIES), default="error", show_default=True,
              help="How to report an extension whose definition is not held (the HL7 validator: error).")
@click.option("--allow-extension-domain", "extension_domains", multiple=True, metavar="URL",
              help="Accept extensions whose URL starts with this, without a definition (repeatable).")
@click.option("--allow-any-extensions", is_flag=True, help="Accept every extension without a definition.")
@click.option("--our-profiles", is_flag=True,
              help="Judge a resource without meta.profile by the ketamine profile of its type.")
@click.option("--allow-example-urls", is_flag=True,
              help="Accept example URLs (example.org, acme.com) in canonicals that do not resolve (the HL7 "
                   "validator refuses them unless -allow-example-urls).")
@click.option("--assume-valid-rest-references", is_flag=True,
              help="Refuse a reference to a type the element does not allow even when its target is not contained or "
                   "in the Bundle (the HL7 validator checks only targets it resolves unless "
                   "-assume-valid-rest-references).")
@click.option("--tx", "tx_server", envvar="KFHIR_TX_URL", default=NO_TX, show_default=True, metavar="URL",
              help="A FHIR terminology server asked what offline expansion cannot answer (LOINC or SNOMED CT codes "
                   "and displays, value sets not held or not expandable here); n/a: none (env KFHIR_TX_URL).")
@click.option("--tx-timeout", type=click.FloatRange(0.1, 300), default=10.0, show_default=True, metavar="SECONDS",
              help="How long a terminology server's answer is waited for; then the offline answer and a warning.")
@click.option("--display-issues", type=click.Choice(SEVERITIES), default="error", show_default=True,
              help="How to report a display that is not one of its code's, in a code system held completely or by the "
                   "terminology server (the HL7 validator: error; its -display-issues-are-warnings: warning).")
def validate_command(paths: tuple[Path, ...], profile: str | None, igs: tuple[Path, ...], fmt: str,
                     must_support: bool, unknown_profile: str, unknown_extension: str,
                     extension_domains: tuple[str, ...], allow_any_extensions: bool, our_profiles: bool,
                     allow_example_urls: bool, assume_valid_rest_references: bool, tx_server: str, tx_timeout: float,
                     display_issues: str) -> None:
    """Validate FHIR JSON files (or folders of them) against R4 and the profiles they claim, as the HL7
    validator does by default (the options change that)."""
    from service.validation.policy import ANY, PolicyError, ValidationPolicy

    try:
        policy = ValidationPolicy(unknown_profile=unknown_profile, unknown_extension=unknown_extension,
                                  extension_domains=(*extension_domains, *([ANY] if allow_any_extensions else [])),
                                  our_profiles=our_profiles, tx_server=None if tx_server == NO_TX else tx_server,
                                  tx_timeout=tx_timeout, display_issues=display_issues,
                                  allow_example_urls=allow_example_urls,
                                  assume_valid_rest_references=assume_valid_rest_references)
    except PolicyError as exc:
        raise click.UsageError(str(exc).replace("tx_server", "--tx")) from None
    sys.exit(run_validate(list(paths), profile, list(igs), fmt, must_support, policy))


def run_validate(paths: list[Path], profile: str | None, igs: list[Path], fmt: str, must_support: bool = False,
                 policy: ValidationPolicy | None = None) -> int:
    """Exit status: 0 no errors, 1 some error, 2 a bad --ig or --profile. `must_support` also reports, as
    information, mustSupport elements of the profiles that the resource leaves out; `policy` defaults to the
    HL7 validator's (service/validation/policy.py)."""
    from service.conformance.definitions import load
    from service.fhirjson import has_errors, operation_outcome
    from service.validation import ours
    from service.validation.engine import UnknownProfile
    from service.validation.policy import ValidationPolicy

    validator = ours(load().with_own([*load().own.values(), *_extra(igs)]), policy or ValidationPolicy())
    try:
        if profile:
            validator.plan(profile)  # held with a snapshot, or one generated from its differential
    except UnknownProfile:
        raise click.UsageError(f"unknown profile {profile}") from None
    files = _files(paths)
    if not files:
        raise click.UsageError("no .json files to validate in " + ", ".join(str(p) for p in paths))
    judged = [(path, _findings(validator, path, profile, must_support, walked)) for path, walked in files]
    skipped = [path for path, findings in judged if findings is None]
    results = [(path, findings) for path, findings in judged if findings is not None]
    if not results:
        raise click.UsageError("no FHIR resources to validate in " + ", ".join(str(p) for p in paths))
    if fmt == "text":
        for path in skipped:
            click.echo(f"{path}: skipped (not a FHIR resource)")
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


def _findings(validator: Validator, path: Path, profile: str | None, must_support: bool = False,
              walked: bool = False) -> list[Finding] | None:
    """The findings about the file; None for a file met while walking a folder that is JSON but no FHIR resource
    (a manifest beside the examples): a named file is always judged."""
    from service.errors import RequestError
    from service.fhirjson import Finding
    from service.jsondoc import parse_json
    from service.validation.positions import locate, root_name

    text = path.read_bytes()
    try:
        resource = parse_json(text, MAX_DEPTH)
    except RequestError as exc:  # not JSON (400), or JSON no store could hold (a NUL: 422)
        return [Finding("fatal", "structure", "$this", exc.detail)]
    if walked and not (isinstance(resource, dict) and "resourceType" in resource):
        return None
    return locate(validator.validate(resource, profile, must_support=must_support),
                  text.decode("utf-8", "replace"), root_name(resource))


def _files(paths: list[Path]) -> list[tuple[Path, bool]]:
    """Each file to judge, and whether it was found by walking a folder (not named by the user)."""
    out: list[tuple[Path, bool]] = []
    for path in paths:
        out += [(p, True) for p in sorted(path.rglob("*.json"))] if path.is_dir() else [(path, False)]
    return out


def _extra(igs: list[Path]) -> list[Resource]:
    from service.conformance.package import CONFORMANCE_TYPES, Package, read_folder

    out: list[Resource] = []
    for ig in igs:
        try:
            if ig.is_dir():
                out += read_folder(ig)
            elif ig.suffix == ".tgz":
                # A package's own ImplementationGuide is not one whose global profiles apply: the HL7 validator
                # CLI loads a package's resources into its context but lists as guides only those it loads as
                # loose files or folders (org.hl7.fhir.validation IgLoader.loadIg), as here.
                package = Package.from_tgz(ig)
                out += [r for r in package.resources() if r.get("resourceType") in CONFORMANCE_TYPES
                        and r.get("resourceType") != "ImplementationGuide"]
            else:
                doc = json.loads(ig.read_text(encoding="utf-8"))
                if not isinstance(doc, dict) or doc.get("resourceType") not in CONFORMANCE_TYPES:
                    raise click.UsageError(f"--ig {ig}: not a conformance resource")
                out.append(doc)
        except (OSError, ValueError, KeyError, AttributeError, TypeError, tarfile.TarError) as exc:
            raise click.UsageError(f"--ig {ig}: {exc}") from None
    return out
