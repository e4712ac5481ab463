"""Native paths for the R4 invariants our resources meet most (obs-6, obs-7, vs-2, vs-3, con-3, con-4, con-5,
mad-1), each 10-30 µs through FHIRPath on every Observation, Condition or administration.

As ig_invariants: keyed by the exact expression, fhirpathpy's answer or plain.NotPlain to hand the case back;
tests/validation/test_native_invariants.py compares the two."""
from __future__ import annotations

from typing import Any

from service.validation.ig_invariants import MA_RATE, OBS_VALUE, Native
from service.validation.plain import Choice, NotPlain, coded, codings, exists, objects, of_type

VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ERROR = frozenset({"entered-in-error"})
COMPONENT_VALUE, ABATEMENT = Choice("Observation.component.value"), Choice("Condition.abatement")


def _observation_value(node: dict[str, Any]) -> Any:
    of_type(node, "Observation")
    return OBS_VALUE.of(node)[1]


def obs_6(node: dict[str, Any], base: str, resource: Any) -> bool:
    return _observation_value(node) is None or not exists(node, "dataAbsentReason")


def obs_7(node: dict[str, Any], base: str, resource: Any) -> bool:
    """A component's code is not the Observation's own code, when the Observation has a value."""
    value = _observation_value(node)
    if type(resource) is not dict:
        raise NotPlain("%resource")
    own = codings(resource, "code")
    repeated = False
    for component in objects(node, "component"):
        for concept in objects(component, "code"):
            if any(coding == mine for coding in objects(concept, "coding") for mine in own):  # intersect()
                repeated = True
    return value is None or not repeated


def vs_2(node: dict[str, Any], base: str, resource: Any) -> bool:
    value = _observation_value(node)
    alone = not exists(node, "component") and not exists(node, "hasMember")
    return not alone or exists(node, "dataAbsentReason") or value is not None


def vs_3(node: dict[str, Any], base: str, resource: Any) -> bool:
    if base != "Observation.component" or "resourceType" in node:
        raise NotPlain(base)
    return COMPONENT_VALUE.of(node)[1] is not None or exists(node, "dataAbsentReason")


def _condition(node: dict[str, Any]) -> tuple[bool, bool]:
    """(clinicalStatus.exists(), the verification status is entered-in-error)."""
    of_type(node, "Condition")
    return exists(node, "clinicalStatus"), coded(codings(node, "verificationStatus"), VERIFICATION, ERROR)


def con_3(node: dict[str, Any], base: str, resource: Any) -> bool:
    """`category.select($this = 'problem-list-item')` gives one value per category (an object never equals
    text), so it is empty exactly when there is no category."""
    status, error = _condition(node)
    categories = objects(node, "category")
    return status or error or not categories


def con_4(node: dict[str, Any], base: str, resource: Any) -> bool:
    _condition(node)
    ended = ABATEMENT.of(node)[1] is not None
    resolved = coded(codings(node, "clinicalStatus"), CLINICAL, frozenset({"resolved", "remission", "inactive"}))
    return not ended or resolved


def con_5(node: dict[str, Any], base: str, resource: Any) -> bool:
    status, error = _condition(node)
    return not error or not status


def mad_1(node: dict[str, Any], base: str, resource: Any) -> bool:
    if base != "MedicationAdministration.dosage" or "resourceType" in node:
        raise NotPlain(base)
    rate = MA_RATE.of(node)[1]
    return exists(node, "dose") or rate is not None


NATIVE: dict[str, Native] = {
    "dataAbsentReason.empty() or value.empty()": obs_6,
    "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()": obs_7,
    "(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())": vs_2,
    "value.exists() or dataAbsentReason.exists()": vs_3,
    "clinicalStatus.exists() or verificationStatus.coding.where(system='" + VERIFICATION + "' and code = "
    "'entered-in-error').exists() or category.select($this='problem-list-item').empty()": con_3,
    "abatement.empty() or clinicalStatus.coding.where(system='" + CLINICAL + "' and (code='resolved' or "
    "code='remission' or code='inactive')).exists()": con_4,
    "verificationStatus.coding.where(system='" + VERIFICATION + "' and code='entered-in-error').empty() or "
    "clinicalStatus.empty()": con_5,
    "dose.exists() or rate.exists()": mad_1,
}
