"""Every clinical finding of a record as a DetectedIssue (profile ketamine-safety-flag) in the record's Bundle.

The findings come from the domain rules (service/domain/findings.py), not from a mapping file: a finding is
derived from the record, so it is added to the Bundle the mapping made, never read back into a record. A
screening finding the treatment-plan mapping already raised as a DetectedIssue (a contraindication or an
interacting medication) is completed in place — severity, category, detail, mitigation — so the EHR gets one
flag per finding. Each flag implicates the resources the finding is about (the vital-sign Observation, the
score, the session, the order) and names the readings in its evidence.
"""
from __future__ import annotations

import re
from functools import cache
from typing import Any

from service.domain.findings import CATALOGUE, FLAG_SYSTEM
from service.mapping.engine import TAG_SYSTEM
from service.mapping.identity import RecordKey
from service.mapping.narrative import narrative
from service.mapping.spec import Narrative, Spec

PROFILE = "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-safety-flag"
#: Only our code: HL7's detectedissue-category codes (v3 ActCode DOSE, DRG, COND, PREG, …; hl7.fhir.r4.core 4.0.1)
#: would fit beside it, but HAPI FHIR 8.8 validating offline refuses a DetectedIssue.code holding a coding it
#: cannot expand beside ours ("None of the codings provided are in the value set 'Ketamine Therapy Safety
#: Flags'", 422), so the EHR peer would never get the flag.
#: Screening findings the treatment-plan mapping raises itself: (list field, role) → completed in place.
SCREENING_ROLES = {"screening.contraindications": "contraindication",
                   "screening.interacting_medications": "interaction"}
_ITEM = re.compile(r"^([a-z_.]+)\[(\d+)\](?:\.([a-z_0-9]+))?$")


def add_flags(bundle: dict[str, Any], spec: Spec, record: dict[str, Any], findings: list[dict[str, Any]]) -> None:
    """Add (or complete) one DetectedIssue per finding in `bundle`, the Bundle `spec` made of `record`."""
    made = _Made(bundle, spec)
    counts: dict[str, int] = {}
    for finding in findings:
        if not finding.get("code") or finding.get("rule") not in CATALOGUE:
            continue  # errors and notes are not findings
        existing = made.screening_flag(finding["field"])
        if existing is not None:
            _complete(existing, finding)
            continue
        ordinal = counts[finding["rule"]] = counts.get(finding["rule"], -1) + 1
        key = RecordKey(spec.kind, record.get("source", "default"), record["external_id"],
                        f"flag-{finding['rule']}", ordinal)
        resource = _flag(key, spec, made, finding, record)
        bundle["entry"].append({"fullUrl": f"urn:uuid:{key.id}", "resource": resource,
                                "request": {"method": "PUT", "url": f"DetectedIssue/{key.id}"}})


class _Made:
    """The Bundle's entries by the role and list item that made them (read from our business identifiers)."""

    def __init__(self, bundle: dict[str, Any], spec: Spec) -> None:
        self.spec = spec
        self.by_key: dict[tuple[str | None, int | None], list[dict[str, Any]]] = {}
        for entry in bundle["entry"]:
            found = entry["resource"].get("identifier")
            for ident in found if isinstance(found, list) else [found] if isinstance(found, dict) else []:
                key = RecordKey.parse(ident.get("system"), ident.get("value"))
                if key is not None and key.kind == spec.kind:
                    self.by_key.setdefault((key.role, key.item), []).append(entry)
        self.primary = self.by_key[(None, None)][0]

    def role_entries(self, role: str, item: int | None = None) -> list[dict[str, Any]]:
        return self.by_key.get((role, item), [])

    def screening_flag(self, field: str) -> dict[str, Any] | None:
        match = _ITEM.match(field)
        if match is None or match.group(1) not in SCREENING_ROLES or match.group(3):
            return None
        found = self.role_entries(SCREENING_ROLES[match.group(1)], int(match.group(2)))
        return found[0]["resource"] if found else None

    def implicated(self, field: str) -> list[dict[str, Any]]:
        """The entries a finding about `field` is about: the readings of a list item, else the main order."""
        match = _ITEM.match(field)
        if match is not None:
            base, item, measure = match.group(1), int(match.group(2)), match.group(3)
            roles = [r for r in self.spec.roles if r.for_each == base]
            if measure:
                roles = [r for r in roles if any(rule.field == measure for rule in r.rules)] or roles
            entries = [e for r in roles for e in self.role_entries(r.role, item)]
            if entries:
                return entries
        if self.spec.kind == "assessment" and field == "phq9_item9" and self.role_entries("item9"):
            return self.role_entries("item9")
        if self.spec.kind == "treatment-plan" and self.role_entries("protocol"):
            return self.role_entries("protocol")  # screening and dosing weigh on the order
        return [self.primary]


def _flag(key: RecordKey, spec: Spec, made: _Made, finding: dict[str, Any],
          record: dict[str, Any]) -> dict[str, Any]:
    primary = made.primary["resource"]
    implicated = made.implicated(finding["field"])
    display = _display(finding["code"])
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue", "id": key.id,
        "meta": {"profile": [PROFILE],
                 "tag": [{"system": TAG_SYSTEM, "code": f"{spec.kind}/{spec.exact_version}",
                          "display": f"Mapped by mappings/{spec.kind}.yaml version {spec.exact_version}"}]},
        "identifier": [key.identifier()],
        "status": "final",
        "code": {"coding": [{"system": FLAG_SYSTEM, "code": finding["code"], "display": display}], "text": display},
        "severity": finding["severity"],
        "patient": dict(primary.get("subject") or primary.get("patient") or {}),
    }
    when = (finding.get("values") or {}).get("at") or _record_time(record)
    if when:
        resource["identifiedDateTime"] = when
    resource["implicated"] = [{"reference": e["fullUrl"]} for e in implicated]
    resource["evidence"] = [_evidence(finding, implicated)]
    resource["detail"] = f"{finding['message']}. Source: {finding.get('source', '')}"
    _mitigate(resource, finding)
    resource["text"] = narrative(Narrative(f"Safety flag ({finding['severity']}): {display}",
                                           ("{message}", "Source: {source}")), finding, record)
    return resource


def _complete(resource: dict[str, Any], finding: dict[str, Any]) -> None:
    """A flag the plan mapping raised for a screening item, completed with what the finding knows."""
    codings = resource.setdefault("code", {}).setdefault("coding", [])
    own = {"system": FLAG_SYSTEM, "code": finding["code"], "display": _display(finding["code"])}
    if not any(c.get("system") == FLAG_SYSTEM and c.get("code") == finding["code"] for c in codings):
        codings.append(own)  # e.g. pregnancy-or-breastfeeding beside the mapping's contraindication-present
    resource["severity"] = finding["severity"]
    resource["detail"] = f"{finding['message']}. Source: {finding.get('source', '')}"
    _mitigate(resource, finding)


def _evidence(finding: dict[str, Any], implicated: list[dict[str, Any]]) -> dict[str, Any]:
    values = {k: v for k, v in (finding.get("values") or {}).items() if k != "override"}
    shown = "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in values.items()) or finding["message"]
    evidence: dict[str, Any] = {"code": [{"text": f"{finding['field']}: {shown}"}]}
    readings = [e for e in implicated if e["resource"]["resourceType"] == "Observation"]
    if readings:
        evidence["detail"] = [{"reference": e["fullUrl"]} for e in readings]
    return evidence


def _mitigate(resource: dict[str, Any], finding: dict[str, Any]) -> None:
    """A documented override travels as the flag's mitigation: who decided, when, and why."""
    override = (finding.get("values") or {}).get("override")
    if not override:
        return
    by = override.get("by") or {}
    author: dict[str, Any] = {"identifier": dict(by["identifier"])} if by.get("identifier") else {}
    if by.get("name"):
        author["display"] = by["name"]
    mitigation: dict[str, Any] = {"action": {"text": f"Treatment decided despite the finding: {override['reason']}"},
                                  "date": override["at"]}
    if author:
        mitigation["author"] = author
    resource["mitigation"] = [mitigation]


def _display(code: str) -> str:
    return _displays().get(code, code)


@cache
def _displays() -> dict[str, str]:
    """The safety-flag CodeSystem's displays (profiles/), read once."""
    from service.conformance.definitions import load

    return {c["code"]: c.get("display", c["code"]) for c in (load().own.get(FLAG_SYSTEM) or {}).get("concept", [])}


def _record_time(record: dict[str, Any]) -> str | None:
    for name in ("started_at", "at", "onset_at"):
        if isinstance(record.get(name), str):
            return str(record[name])
    return None
