"""The CapabilityStatement (GET /fhir/metadata): what this server actually does, per resource type."""
from __future__ import annotations

from typing import Any

from service.conformance.profiles import shipped
from service.search.parameters import TYPES, params_of
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
VALIDATE = {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}


def capability(base: str) -> dict[str, Any]:
    """The CapabilityStatement of what this server actually does, with our profile(s) of each type (the IG's)."""
    profiles = shipped().by_type
    resources = []
    for resource_type in TYPES:
        entry: dict[str, Any] = {
            "type": resource_type,
            "interaction": [{"code": c} for c in ("read", "vread", "update", "delete", "history-instance",
                                                  "history-type", "create", "search-type")],
            "versioning": "versioned-update", "readHistory": True, "updateCreate": True,
            "conditionalCreate": True, "conditionalUpdate": True, "conditionalDelete": "not-supported",
            "searchInclude": [f"{resource_type}:{p.name}" for p in params_of(resource_type).values()
                              if p.kind == "reference"],
            "searchParam": [{"name": p.name, "type": p.kind,
                             **({"documentation": p.description} if p.description else {})}
                            for p in params_of(resource_type).values()],
            "operation": [VALIDATE],
        }
        if profiles.get(resource_type):
            entry["supportedProfile"] = list(profiles[resource_type])
        resources.append({k: v for k, v in entry.items() if v != []})  # ele-1: no empty arrays
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": RELEASED, "kind": "instance",
        "software": {"name": NAME, "version": version()},
        "implementation": {"description": f"{NAME} FHIR R4 facade", "url": base},
        "fhirVersion": "4.0.1", "format": ["application/fhir+json", "json"],
        "rest": [{"mode": "server", "security": SECURITY, "resource": resources,
                  "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
                  "operation": [VALIDATE]}],
    }
