"""Every clinical finding of a record as a DetectedIssue (profile ketamine-safety-flag) in the record's Bundle.

The findings come from the domain rules (service/domain/findings.py), not from a mapping file: a finding is
derived from the record, so it is added to the Bundle the mapping made, never read back into a record. A
screening finding the treatment-plan mapping already raised as a DetectedIssue (a contraindication or an
interacting medication) is completed in place — severity, category, detail, mitigation — so the EHR gets one
flag per finding. The other findings make one flag per safety-flag code of the record, identified by (record,
code), implicating the resources the findings are about (the vital-sign Observation, the score, the session, the
order) and naming the readings in its evidence. A flag an earlier version raised and this one does not is sent
again as entered-in-error (withdraw_stale).
"""
from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from typing import Any

from service.domain.findings import CATALOGUE, FLAG_SYSTEM, SEVERITIES
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
    """Add (or complete) the DetectedIssues of `findings` in `bundle`, the Bundle `spec` made of `record`: one per
    safety-flag code, its identity (record, code), so a re-sent record updates its flags instead of adding."""
    made = _Made(bundle, spec)
    by_code: dict[str, list[dict[str, Any]]] = {}
    for finding in findings:
        if not finding.get("code") or finding.get("rule") not in CATALOGUE:
            continue  # errors and notes are not findings
        existing = made.screening_flag(finding["field"])
        if existing is not None:
            _complete(existing, finding)
        else:
            by_code.setdefault(finding["code"], []).append(finding)
    for code, found in by_code.items():
        key = flag_key(spec.kind, record, code)
        resource = _flag(key, spec, made, code, found, record)
        bundle["entry"].append({"fullUrl": f"urn:uuid:{key.id}", "resource": resource,
                                "request": {"method": "PUT", "url": f"DetectedIssue/{key.id}"}})


def flag_key(kind: str, record: dict[str, Any], code: str) -> RecordKey:
    """The identity of a record's flag of one safety-flag code (`…#flag-{code}`), the same in every version."""
    return RecordKey(kind, record.get("source", "default"), record["external_id"], f"flag-{code}")


#: A flag a re-sent record no longer raises is withdrawn, not deleted, so the EHR and anyone who read it see that
#: it no longer stands. R4 binds DetectedIssue.status to ObservationStatus (required); its `entered-in-error` is
#: "The observation has been withdrawn following previous final release. This electronic record should never have
#: existed, though it is possible that real-world decisions were based on it", and DetectedIssue.status is a
#: modifier "because the status contains the codes cancelled and entered-in-error that mark the issue as not
#: currently valid" (hl7.fhir.r4.core 4.0.1, DetectedIssue.status and CodeSystem observation-status). The record
#: is the clinic's correction of what it sent, so the flag computed from the earlier version should never have
#: existed; `cancelled` ("the measurement was not started or not completed") describes no such case. A DELETE
#: would leave an EHR that copied the flag unaware, and our history would lose that it was withdrawn.
WITHDRAWN = "entered-in-error"
_WITHDRAWN_NOTE = "Withdrawn: the clinic record as sent again no longer raises this flag."


def withdraw_stale(bundle: dict[str, Any], stored: list[dict[str, Any]]) -> list[str]:
    """Add to `bundle`, a record's mapped Bundle, each DetectedIssue of `stored` (flags the store holds under the
    record's identifiers, from earlier versions) that the Bundle no longer has, as `entered-in-error`; their ids.

    Flags withdrawn before are sent again: the outbox keeps only a record's newest queued Bundle, so the one
    that first withdrew a flag may never have reached an EHR. Their references are kept only to resources of
    this Bundle (an EHR need not hold what an earlier version referred to); the patient is the record's."""
    owner = _owner(bundle)
    if owner is None:
        return []
    key, primary = owner
    present = {(e.get("request") or {}).get("url", ""): e["fullUrl"] for e in bundle["entry"] if e.get("fullUrl")}
    withdrawn = []
    for old in stored:
        if old.get("resourceType") != "DetectedIssue" or f"DetectedIssue/{old.get('id')}" in present or \
                not any(_same_record(key, i) for i in old.get("identifier") or []):
            continue
        resource = _withdrawn(old, primary, present)
        bundle["entry"].append({"fullUrl": f"urn:uuid:{old['id']}", "resource": resource,
                                "request": {"method": "PUT", "url": f"DetectedIssue/{old['id']}"}})
        withdrawn.append(str(old["id"]))
    return withdrawn


def _owner(bundle: dict[str, Any]) -> tuple[RecordKey, dict[str, Any]] | None:
    """The record a mapped Bundle is of (its main resource's key) and that main resource."""
    for entry in bundle.get("entry") or []:
        for ident in entry["resource"].get("identifier") or []:
            key = RecordKey.parse(ident.get("system"), ident.get("value")) if isinstance(ident, dict) else None
            if key is not None and key.role is None:
                return key, entry["resource"]
    return None


def _same_record(key: RecordKey, ident: Any) -> bool:
    other = RecordKey.parse(ident.get("system"), ident.get("value")) if isinstance(ident, dict) else None
    return other is not None and other.role is not None and \
        (other.kind, other.source, other.external_id) == (key.kind, key.source, key.external_id)


def _withdrawn(old: dict[str, Any], primary: dict[str, Any], present: dict[str, str]) -> dict[str, Any]:
    def kept(refs: list[Any]) -> list[dict[str, str]]:
        return [{"reference": present[r["reference"]]} for r in refs
                if isinstance(r, dict) and r.get("reference") in present]

    resource = {k: v for k, v in old.items() if k not in ("meta", "text", "author", "implicated", "evidence")}
    resource["meta"] = {"profile": [PROFILE], "tag": list((primary.get("meta") or {}).get("tag") or [])}
    resource["status"] = WITHDRAWN
    resource["patient"] = dict(primary.get("subject") or primary.get("patient") or {})
    implicated = kept(old.get("implicated") or [])
    if implicated:
        resource["implicated"] = implicated
    evidence = []
    for item in old.get("evidence") or []:
        shown = {**item, "detail": kept(item.get("detail") or [])}
        evidence.append({k: v for k, v in shown.items() if v})
    if any(evidence):
        resource["evidence"] = [e for e in evidence if e]
    earlier = str(old.get("detail") or "")
    resource["detail"] = earlier if earlier.startswith(_WITHDRAWN_NOTE) else \
        f"{_WITHDRAWN_NOTE} It said: {earlier}" if earlier else _WITHDRAWN_NOTE
    display = ((old.get("code") or {}).get("text")) or "safety flag"
    resource["text"] = narrative(Narrative(f"Withdrawn safety flag (entered in error): {display}",
                                           ("{detail}",)), resource, {})
    return resource


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


def _flag(key: RecordKey, spec: Spec, made: _Made, code: str, found: list[dict[str, Any]],
          record: dict[str, Any]) -> dict[str, Any]:
    """One flag for every finding of `code`: the highest severity, every reading implicated and named as evidence."""
    primary = made.primary["resource"]
    display = _display(code)
    severity = min((f["severity"] for f in found), key=SEVERITIES.index)
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue", "id": key.id,
        "meta": {"profile": [PROFILE],
                 "tag": [{"system": TAG_SYSTEM, "code": f"{spec.kind}/{spec.exact_version}",
                          "display": f"Mapped by mappings/{spec.kind}.yaml version {spec.exact_version}"}]},
        "identifier": [key.identifier()],
        "status": "final",
        "code": {"coding": [{"system": FLAG_SYSTEM, "code": code, "display": display}], "text": display},
        "severity": severity,
        "patient": dict(primary.get("subject") or primary.get("patient") or {}),
    }
    when = _earliest([(f.get("values") or {}).get("at") for f in found]) or _record_time(record)
    if when:
        resource["identifiedDateTime"] = when
    implicated: dict[str, dict[str, Any]] = {}
    evidence = []
    for finding in found:
        about = made.implicated(finding["field"])
        implicated.update((e["fullUrl"], e) for e in about)
        evidence.append(_evidence(finding, about))
    resource["implicated"] = [{"reference": url} for url in implicated]
    resource["evidence"] = evidence
    messages = "; ".join(f["message"] for f in found)
    sources = "; ".join(dict.fromkeys(f.get("source", "") for f in found))
    resource["detail"] = f"{messages}. Source: {sources}"
    for finding in found:
        _mitigate(resource, finding)
    resource["text"] = narrative(Narrative(f"Safety flag ({severity}): {display}", ("{message}", "Source: {source}")),
                                 {"message": messages, "source": sources}, record)
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
    if not override or resource.get("mitigation"):
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


def _earliest(moments: list[Any]) -> str | None:
    given = [m for m in moments if isinstance(m, str)]
    return min(given, key=datetime.fromisoformat) if given else None


def _record_time(record: dict[str, Any]) -> str | None:
    for name in ("started_at", "at", "onset_at"):
        if isinstance(record.get(name), str):
            return str(record[name])
    return None
