"""Which profile the facade holds a written resource to: ours, or the resource type's R4 base.

A resource that claims one of our profiles (meta.profile), or that is ketamine or esketamine by its medication
code, is held to our profile: it is what this server exists to receive. Any other resource of a type we serve
(a hypertension Condition, a sertraline MedicationRequest) is an ordinary R4 resource an EHR may well send; it
is held to its R4 base, as any R4 server would hold it, and the reply says so in an information issue.
The validator helper's own policy API may replace `judge`; nothing else here decides.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from service.conformance.definitions import CORE_SD
from service.conformance.profiles import CANONICAL, shipped
from service.fhirjson import Finding

#: A validator: a resource and the profile to force (None: the one the resource claims, or ours of its type).
Validate = Callable[[dict[str, Any], str | None], list[Finding]]
#: The value set of the medications our profiles are for (profiles/ValueSet-ketamine-medications.json).
MEDICATIONS = CANONICAL + "/ValueSet/ketamine-medications"


def judge(resource: dict[str, Any], validate: Validate) -> list[Finding]:
    """The findings about `resource` under the profile this server holds it to (see the module docstring)."""
    kind = str(resource.get("resourceType"))
    if claims_ours(resource):
        return [*validate(resource, None), _held(kind, _claimed(resource), "it claims it")]
    if is_ketamine(resource):  # ours of its type, whatever else it claims
        ours = shipped().defaults(resource)[:1]
        return [*validate(resource, ours[0] if ours else None),
                _held(kind, ours, f"its medication is in {MEDICATIONS}")]
    held = validate(resource, CORE_SD + kind)
    why = ("it claims none of this server's profiles"
           + (" and its medication is not ketamine or esketamine" if _medications(resource) else ""))
    claimed = [p for p in _claimed(resource) if not p.startswith(CANONICAL)]
    also = f"; the profiles it claims ({', '.join(claimed)}) are not known here" if claimed else ""
    return [*held, Finding("information", "informational", kind,
                           f"Held to the R4 base {kind} ({CORE_SD + kind}): {why}{also}.")]


def _held(kind: str, profiles: list[str], why: str) -> Finding:
    return Finding("information", "informational", kind, f"Held to {', '.join(profiles)}: {why}.")


def claims_ours(resource: dict[str, Any]) -> bool:
    return any(p.startswith(CANONICAL + "/") for p in _claimed(resource))


def is_ketamine(resource: dict[str, Any]) -> bool:
    """Its medication (medicationCodeableConcept, or a contained Medication it refers to) has a coding in our
    medications value set, and a resource type we have a profile for."""
    if not shipped().by_type.get(str(resource.get("resourceType"))):
        return False
    codes = ketamine_codes()
    return any((c.get("system"), c.get("code")) in codes for c in _medications(resource))


@cache
def ketamine_codes() -> frozenset[tuple[str, str]]:
    """(system, code) of every concept our medications value set includes (it enumerates them)."""
    from service.conformance.definitions import load

    value_set = load().own.get(MEDICATIONS) or {}
    return frozenset((include["system"], concept["code"])
                     for include in (value_set.get("compose") or {}).get("include") or []
                     for concept in include.get("concept") or [])


def _claimed(resource: dict[str, Any]) -> list[str]:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return [p for p in profiles if isinstance(p, str)] if isinstance(profiles, list) else []


def _medications(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The codings of the resource's medication, whichever way it gives it."""
    concept = resource.get("medicationCodeableConcept")
    reference = resource.get("medicationReference")
    if isinstance(reference, dict) and str(reference.get("reference", "")).startswith("#"):
        for contained in _dicts(resource.get("contained")):
            if contained.get("resourceType") == "Medication" and "#" + str(contained.get("id")) == \
                    reference["reference"]:
                concept = contained.get("code")
    return list(_dicts(concept.get("coding"))) if isinstance(concept, dict) else []


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    return (v for v in value if isinstance(v, dict)) if isinstance(value, list) else iter(())
