"""The CapabilityStatement (GET /fhir/metadata): what this server actually does, per resource type.

Every type served is listed: the facade's, the audit trail (AuditEvent, web/audit_api.py) and our implementation
guide's conformance resources; each with the profiles it is held to (facade/policy.py: ours when a resource claims
it or is ketamine/esketamine, else its R4 base), each search parameter the search code accepts, and only the
interactions the routes answer (tests/facade/test_capability.py walks it and tries each).
"""
from __future__ import annotations

from typing import Any

from service.conformance.definitions import CORE_SD
from service.conformance.package import CONFORMANCE_TYPES
from service.conformance.profiles import CANONICAL, shipped
from service.search.parameters import PARAMS, TYPES, Param, params_of
from service.version import NAME, RELEASED, version

#: CapabilityStatement.rest.security; codes from R4 restful-security-service (OAuth, SMART-on-FHIR)
SECURITY = {
    "cors": False,
    "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                             "code": code, "display": code}]} for code in ("SMART-on-FHIR", "OAuth")],
    "description": "Every interaction except GET metadata needs Authorization: Bearer with an API key "
                   "(ketamine-fhir clients add) or a JWT access token from the configured OAuth issuer. SMART "
                   "system/ scopes decide, v2 (system/Observation.rs) or v1 (system/*.read): per interaction, per "
                   "Bundle entry and per _include target; system/AuditEvent.rs reads the audit trail.",
}
VALIDATE = {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
            "documentation": "Besides resource and profile: unknown-profile, unknown-extension, extension-domain, "
                             "our-profiles, allow-example-urls, display-issues and assume-valid-rest-references (the "
                             "policy, defaults the HL7 "
                             "validator's), and txServer: the terminology server asked what offline expansion cannot "
                             "answer (one this server allows, or n/a)."}
#: our implementation guide (profiles/ImplementationGuide-ketamine-fhir.json)
IMPLEMENTATION_GUIDE = CANONICAL + "/ImplementationGuide/ketamine-fhir"
WRITES = ("read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type")
SEARCH_DOC = ("Modifiers: :missing on every parameter but _id and _lastUpdated; :not on tokens; :exact and "
              ":contains on strings. Reference parameters chain one level to a parameter of their target "
              "(subject:Patient.identifier, patient.name) and are reverse chained by _has:Type:param:target-param. "
              "Result parameters: _count, _offset, _sort (date, _lastUpdated, _id), _include, _revinclude, _total "
              "(none, estimate, accurate), _summary (true, text, data, count, false), _elements. Bundle.total "
              "is counted for _total=accurate or estimate, _summary=count and _count=0; otherwise it is given "
              "on the last page only. "
              "PATCH is not supported (405): read, change and PUT with If-Match.")
POLICY_DOC = ("A resource that claims one of our profiles (meta.profile), or whose medication is ketamine or "
              "esketamine by its code, is held to our profile; any other is held to its R4 base.")
#: the audit trail's search parameters (web/audit_api.py), as SearchParameters of R4 AuditEvent
AUDIT_PARAMS = (("date", "date", "When recorded, with a prefix eq, lt, le, gt, ge (repeatable)"),
                ("agent", "token", "The client (API client name or JWT client id)"),
                ("entity-type", "token", "A resource type, record kind or audit-entity-type code"),
                ("action", "token", "C, R, U, D or E"))


def capability(base: str) -> dict[str, Any]:
    """The CapabilityStatement of what this server actually does."""
    resources = [_served(t) for t in TYPES] + [_audit()] + [_conformance(t) for t in CONFORMANCE_TYPES]
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": RELEASED, "kind": "instance",
        "software": {"name": NAME, "version": version()},
        "implementation": {"description": f"{NAME} FHIR R4 facade", "url": base},
        "fhirVersion": "4.0.1", "format": ["application/fhir+json", "json"],
        "implementationGuide": [IMPLEMENTATION_GUIDE],
        "rest": [{"mode": "server", "documentation": f"{POLICY_DOC} {SEARCH_DOC}", "security": SECURITY,
                  "resource": sorted(resources, key=lambda r: str(r["type"])),
                  "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
                  "operation": [VALIDATE]}],
    }


def _served(resource_type: str) -> dict[str, Any]:
    """A type of the facade: every interaction but patch, our profiles and its R4 base."""
    entry: dict[str, Any] = {
        "type": resource_type, "profile": CORE_SD + resource_type,
        "supportedProfile": [*shipped().by_type.get(resource_type, ()), CORE_SD + resource_type],
        "documentation": POLICY_DOC,
        "interaction": [{"code": c} for c in WRITES],
        "versioning": "versioned-update", "readHistory": True, "updateCreate": True,
        "conditionalCreate": True, "conditionalUpdate": True, "conditionalDelete": "not-supported",
        "referencePolicy": ["literal", "enforced", "local"],
        "searchInclude": [f"{resource_type}:{p.name}" for p in params_of(resource_type).values()
                          if p.kind == "reference"],
        "searchRevInclude": revincludes(resource_type),
        "searchParam": [_param(p) for p in params_of(resource_type).values()],
        "operation": [VALIDATE],
    }
    return {k: v for k, v in entry.items() if v != []}  # ele-1: no empty arrays


def revincludes(resource_type: str) -> list[str]:
    """`Type:param` of every reference parameter of a served type that may point at `resource_type`."""
    return [f"{source}:{p.name}" for source in TYPES for p in PARAMS.get(source, {}).values()
            if p.kind == "reference" and (not p.targets or resource_type in p.targets)]


def _param(p: Param) -> dict[str, Any]:
    doc = p.description
    if p.kind == "reference":
        doc = (doc + "; " if doc else "") + "chains one level to a parameter of its target (e.g. .identifier, .name)"
    return {"name": p.name, "type": p.kind, **({"documentation": doc} if doc else {})}


def _audit() -> dict[str, Any]:
    return {"type": "AuditEvent", "profile": CORE_SD + "AuditEvent", "supportedProfile": [CORE_SD + "AuditEvent"],
            "documentation": "The audit trail (IHE BALP): written by the server only; needs system/AuditEvent.rs.",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": n, "type": k, "documentation": d} for n, k, d in AUDIT_PARAMS]}


def _conformance(resource_type: str) -> dict[str, Any]:
    return {"type": resource_type, "profile": CORE_SD + resource_type,
            "supportedProfile": [CORE_SD + resource_type],
            "documentation": "This server's implementation guide: read only.",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": "url", "type": "uri", "documentation": "The canonical URL (|version ignored)"}]}
