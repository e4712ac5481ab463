"""Try it: a record (any kind) or a FHIR resource/Bundle checked, mapped and validated; nothing is stored."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.admin.jsonview import View, annotate
from service.domain.intake import Intake
from service.domain.kinds import KINDS
from service.errors import BadRequest, Issue, Unprocessable
from service.fhirjson import Finding, findings_of
from service.jsondoc import parse_json
from service.mapping import map_record
from service.validation import default_validator

AUTO = "auto"
FHIR = "fhir"
#: What the form offers: detect, a FHIR document, or one of the record kinds.
CHOICES = [AUTO, FHIR, *KINDS]
MAX_DEPTH = 64


class TrialError(ValueError):
    """Input that cannot be tried at all (not JSON, kind unknown); the message says what to change."""


@dataclass
class Trial:
    what: str                                                # fhir or a record kind
    accepted: bool                                           # no error anywhere
    summary: str
    errors: list[Issue] = field(default_factory=list)        # the record's own schema and rule errors
    warnings: list[dict[str, Any]] = field(default_factory=list)   # the record's clinical warnings
    findings: list[Finding] = field(default_factory=list)    # FHIR validation issues, each with its FHIRPath
    bundle: dict[str, Any] | None = None                     # the mapped Bundle
    view: View | None = None                                 # the FHIR JSON the findings are about, by line

    @property
    def high(self) -> list[dict[str, Any]]:
        """High-severity clinical findings: the record is taken, but never shown as a plain green "accepted"."""
        return [w for w in self.warnings if w.get("severity") == "high"]

    def show(self, doc: Any) -> Trial:
        self.view = annotate(doc, self.findings)
        return self


def parse(raw: bytes) -> Any:
    try:
        return parse_json(raw, MAX_DEPTH)
    except BadRequest as exc:
        raise TrialError(exc.detail) from None


def run(raw: bytes, choice: str) -> Trial:
    """Check `raw` as the kind chosen (AUTO: a document with resourceType is FHIR; else the kind must be chosen)."""
    if choice not in CHOICES:
        raise TrialError(f"Unknown kind {choice!r}; choose one of {', '.join(CHOICES)}.")
    doc = parse(raw)
    if not isinstance(doc, dict):
        raise TrialError("The document must be a JSON object (a record, a FHIR resource or a Bundle).")
    if choice == AUTO:
        if "resourceType" not in doc:
            raise TrialError("This is not a FHIR resource (it has no resourceType): choose the record's kind.")
        choice = FHIR
    return try_fhir(doc) if choice == FHIR else try_record(choice, doc)


def try_fhir(doc: dict[str, Any]) -> Trial:
    findings = default_validator().validate(doc)
    errors = sum(f.severity in ("error", "fatal") for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    kind = doc.get("resourceType") if isinstance(doc.get("resourceType"), str) else "document"
    return Trial(FHIR, errors == 0, f"{kind}: {errors} errors, {warnings} warnings", findings=findings).show(doc)


def try_record(kind: str, doc: dict[str, Any]) -> Trial:
    try:
        checked = Intake(None).check(kind, doc)
    except Unprocessable as exc:
        return Trial(kind, False, exc.detail, errors=exc.issues)
    warnings = checked.warnings
    try:
        mapped = map_record(kind, checked.new.content, findings=warnings)
    except Unprocessable as exc:
        outcome = exc.extra.get("operation_outcome")
        return Trial(kind, False, exc.detail, errors=exc.issues if not outcome else [], warnings=warnings,
                     findings=findings_of(outcome) if outcome else [])
    findings = findings_of(mapped.outcome)
    entries = len(mapped.bundle.get("entry", []))
    return Trial(kind, True, f"The {kind} record maps to a Bundle of {entries} resources.", warnings=warnings,
                 findings=findings, bundle=mapped.bundle).show(mapped.bundle)

