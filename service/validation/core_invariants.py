"""Native paths for the R4 invariants our resources meet most: obs-6, obs-7, vs-2, vs-3, con-3, con-4, con-5 and
mad-1 on every Observation, Condition or administration; tim-1…tim-10 on every Timing.repeat, drt-1, rng-2, gol-1,
cpl-3 and per-1 (each 10-30 µs through FHIRPath, per-1 with partial dates or mixed offsets ~100 µs).

As ig_invariants: keyed by the exact expression, fhirpathpy's answer or plain.NotPlain to hand the case back;
tests/validation/test_native_invariants.py compares the two."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from service.validation.ig_invariants import GOAL_DETAIL, MA_RATE, OBS_VALUE, UCUM, Native
from service.validation.plain import (
    Choice,
    InvariantError,
    NotPlain,
    coded,
    codings,
    exists,
    number,
    objects,
    of_type,
    text,
)
from service.validation.temporal import order

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


# --- datatype invariants every Timing, Duration, Range, Period, Goal target and CarePlan activity meets ----------

def _at(node: dict[str, Any], base: str, expected: str) -> None:
    """The element is of the type (or path) whose members the invariant names, not a resource."""
    if base != expected or "resourceType" in node:
        raise NotPlain(base)


def _not_negative(node: dict[str, Any], base: str, key: str) -> bool:
    """`key.exists() implies key >= 0` (tim-4, tim-5) on one decimal."""
    _at(node, base, "Timing.repeat")
    if not exists(node, key):
        return True
    if "_" + key in node or type(node[key]) is list:
        raise NotPlain(key)
    return number(node[key]) >= 0


def _needs(node: dict[str, Any], base: str, key: str, needed: str) -> bool:
    """`key.empty() or needed.exists()` (tim-1, tim-2, tim-6, tim-7, tim-8) on a Timing.repeat."""
    _at(node, base, "Timing.repeat")
    return not exists(node, key) or exists(node, needed)


def tim_1(node: dict[str, Any], base: str, resource: Any) -> bool:
    return _needs(node, base, "duration", "durationUnit")


def tim_2(node: dict[str, Any], base: str, resource: Any) -> bool:
    return _needs(node, base, "period", "periodUnit")


def tim_4(node: dict[str, Any], base: str, resource: Any) -> bool:
    return _not_negative(node, base, "duration")


def tim_5(node: dict[str, Any], base: str, resource: Any) -> bool:
    return _not_negative(node, base, "period")


def tim_6(node: dict[str, Any], base: str, resource: Any) -> bool:
    return _needs(node, base, "periodMax", "period")


def tim_7(node: dict[str, Any], base: str, resource: Any) -> bool:
    return _needs(node, base, "durationMax", "duration")


def tim_8(node: dict[str, Any], base: str, resource: Any) -> bool:
    return _needs(node, base, "countMax", "count")


#: tim-9: the meal-relative events an offset may not be given with (`when`, R4 event-timing)
MEALS = frozenset({"C", "CM", "CD", "CV"})


def tim_9(node: dict[str, Any], base: str, resource: Any) -> bool:
    """An offset needs a `when` that is not a meal itself."""
    _at(node, base, "Timing.repeat")
    if "_when" in node:
        raise NotPlain("_when")
    when = node.get("when")
    events = when if type(when) is list else [] if when is None else [when]
    if any(type(e) is not str for e in events):
        raise NotPlain("when")
    return not exists(node, "offset") or bool(events) and not MEALS.intersection(events)


def tim_10(node: dict[str, Any], base: str, resource: Any) -> bool:
    _at(node, base, "Timing.repeat")
    return not exists(node, "timeOfDay") or not exists(node, "when")


def drt_1(node: dict[str, Any], base: str, resource: Any) -> bool:
    """A Duration with a code is UCUM and has a value (`{} and …` is empty or false: both fail)."""
    _at(node, base, "Duration")
    system = text(node, "system")
    return not exists(node, "code") or system == UCUM and exists(node, "value")


#: what fhirpathpy says when asked to order two Quantity objects (it cannot): kept as the finding's text where the
#: bounds' units differ, as before rng-2 was answered natively
UNORDERED = "'<=' not supported between instances of 'dict' and 'dict'"


def _amount(quantity: dict[str, Any]) -> tuple[int | Decimal, tuple[Any, ...]] | None:
    """(value, unit key) of a plain SimpleQuantity, or None when either is anything else (a `_value` holder, a value
    that is not a number, a unit member that is not text) or when it has a system without a code or a code without a
    system. The unit key is (system, code) when both are given, else ("unit", unit) (the unit itself may be absent)."""
    value, system, code, unit = (quantity.get(k) for k in ("value", "system", "code", "unit"))
    if "_value" in quantity or any(v is not None and type(v) is not str for v in (system, code, unit)):
        return None
    try:
        amount = number(value)
    except NotPlain:
        return None
    if system is not None and code is not None:
        return amount, (system, code)
    return (amount, ("unit", unit)) if system is None and code is None else None


def rng_2(node: dict[str, Any], base: str, resource: Any) -> bool:
    """`low <= high` where both bounds are in the same unit: the same system and code, or neither with the same unit
    text (or none). FHIRPath N1 (http://hl7.org/fhirpath/N1/), 4.1.8 Quantity: "Implementations shall support
    comparison and arithmetic operations on quantities with units where the units are the same", and "may return
    empty ({ }) for calculations involving quantities with units where the units are different"; 6.2 Comparison:
    "When comparing quantities, the dimensions of each quantity must be the same, but not necessarily the unit."
    The HL7 validator compares such bounds (UCUM conversion where units differ); fhirpathpy cannot order two
    Quantity objects at all and fails, so where the units differ (or a value is not a plain number) the finding
    still says the invariant could not be evaluated: converting units needs UCUM, which we do not implement."""
    _at(node, base, "Range")
    if not exists(node, "low") or not exists(node, "high"):
        return True
    low, high = node.get("low"), node.get("high")
    if "_low" in node or "_high" in node or type(low) is not dict or type(high) is not dict:
        raise NotPlain("bounds")
    lower, upper = _amount(low), _amount(high)
    if lower is None or upper is None or lower[1] != upper[1]:
        raise InvariantError(UNORDERED)
    return lower[0] <= upper[0]


def gol_1(node: dict[str, Any], base: str, resource: Any) -> bool:
    _at(node, base, "Goal.target")
    return GOAL_DETAIL.of(node)[1] is None or exists(node, "measure")


def cpl_3(node: dict[str, Any], base: str, resource: Any) -> bool:
    _at(node, base, "CarePlan.activity")
    return not exists(node, "detail") or not exists(node, "reference")


def per_1(node: dict[str, Any], base: str, resource: Any) -> bool:
    """`start <= end` as FHIRPath orders dates and dateTimes (temporal.order); an empty answer fails. A `_start`
    beside a value is two nodes to fhirpathpy's hasValue(): left to it."""
    _at(node, base, "Period")
    start, end = node.get("start"), node.get("end")
    if "_start" in node or "_end" in node:
        raise NotPlain("holder")
    if type(start) is not str or type(end) is not str:
        if (start is None or type(start) is str) and (end is None or type(end) is str):
            return True  # a bound without a value
        raise NotPlain("bounds")
    return order("<=", start, end) is True


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
    "duration.empty() or durationUnit.exists()": tim_1,
    "period.empty() or periodUnit.exists()": tim_2,
    "duration.exists() implies duration >= 0": tim_4,
    "period.exists() implies period >= 0": tim_5,
    "periodMax.empty() or period.exists()": tim_6,
    "durationMax.empty() or duration.exists()": tim_7,
    "countMax.empty() or count.exists()": tim_8,
    "offset.empty() or (when.exists() and when.select($this in ('C' | 'CM' | 'CD' | 'CV')).allFalse())": tim_9,
    "timeOfDay.empty() or when.empty()": tim_10,
    "code.exists() implies ((system = %ucum) and value.exists())": drt_1,
    "low.empty() or high.empty() or (low <= high)": rng_2,
    "(detail.exists() and measure.exists()) or detail.exists().not()": gol_1,
    "detail.empty() or reference.empty()": cpl_3,
    "start.hasValue().not() or end.hasValue().not() or (start <= end)": per_1,
}
