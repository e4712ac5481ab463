"""Native paths for our IG's ket-* invariants (profiles/), which through FHIRPath cost 20-50 µs each per resource
and ket-9 more than 100 µs per score Observation.

Each is keyed by its expression's exact text (a profile that rewrites a rule gets FHIRPath again) and answers as
fhirpathpy does, or raises plain.NotPlain to hand the case back to it. tests/validation/test_native_invariants.py
compares the two on every example of the corpus and on generated resources."""
from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from service.validation.fhirpath_steps import text_order
from service.validation.plain import (
    Choice,
    NotPlain,
    choice_at,
    coded,
    codings,
    exists,
    number,
    objects,
    of_type,
    pairs,
    text,
)
from service.validation.temporal import order

SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"
UCUM, RXNORM = "http://unitsofmeasure.org", "http://www.nlm.nih.gov/research/umls/rxnorm"
INSTRUMENT = "https://ketamine-fhir.org/fhir/CodeSystem/ketamine-instrument"
DOMAIN_MEDICATION = "https://ketamine-fhir.org/fhir/CodeSystem/domain-medication"
SERIOUSNESS = "https://ketamine-fhir.org/fhir/StructureDefinition/adverse-event-seriousness-criterion"
CAUSALITY = "https://ketamine-fhir.org/fhir/StructureDefinition/adverse-event-causality"
IV = frozenset({"47625008"})  # SNOMED CT: intravenous route, as the profiles' rules name it
#: LOINC's blood pressure panel and its two components (ket-6, ket-7), as (system, code) pairs
BP_PANEL, SYSTOLIC, DIASTOLIC = (LOINC, "85354-9"), (LOINC, "8480-6"), (LOINC, "8462-4")
Native = Callable[[dict[str, Any], str, Any], bool]

MA_RATE, MA_EFFECTIVE = Choice("MedicationAdministration.dosage.rate"), Choice("MedicationAdministration.effective")
MA_MEDICATION, DOSE_RATE = Choice("MedicationAdministration.medication"), Choice("Dosage.doseAndRate.rate")
OBS_VALUE = Choice("Observation.value")


def equals(values: list[str | None], literal: str) -> bool | None:
    """`path = 'literal'` over the strings a path gave: empty when none, false when several."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return len(present) == 1 and present[0] == literal


def ordered(first: str, second: str) -> bool:
    """`end >= start` on two Period bounds inside `all()`, where an empty comparison counts as false."""
    answer = text_order(first, second)
    return answer if answer is not None else order(">=", first, second) is True


def _periods_ordered(periods: list[dict[str, Any]]) -> bool:
    """`….all(start.empty() or end.empty() or end >= start)` (ket-4, ket-11)."""
    verdict = True
    for period in periods:
        start, end = text(period, "start"), text(period, "end")
        if start is not None and end is not None and not ordered(end, start):
            verdict = False
    return verdict


def ket_1(node: dict[str, Any], base: str, resource: Any) -> bool:
    """An IV dosage instruction gives a rate or an infusion duration."""
    of_type(node, "MedicationRequest")
    verdict = True
    for dosage in objects(node, "dosageInstruction"):
        iv = coded(codings(dosage, "route"), SNOMED, IV)
        rated = any([DOSE_RATE.of(d)[1] is not None for d in objects(dosage, "doseAndRate")])
        timed = any([exists(r, "duration") for t in objects(dosage, "timing") for r in objects(t, "repeat")])
        if iv and not (rated or timed):
            verdict = False
    return verdict


def _ma_dosages(node: dict[str, Any]) -> list[dict[str, Any]]:
    of_type(node, "MedicationAdministration")
    return objects(node, "dosage")


def ket_2(node: dict[str, Any], base: str, resource: Any) -> bool:
    dosages = _ma_dosages(node)
    iv = coded([c for d in dosages for c in codings(d, "route")], SNOMED, IV)
    rated = any([MA_RATE.of(d)[1] is not None for d in dosages])
    kind, effective = MA_EFFECTIVE.of(node)
    ends = kind == "Period" and exists(effective, "end")
    return not iv or rated or ends


def ket_3(node: dict[str, Any], base: str, resource: Any) -> bool:
    doses = [dose for d in _ma_dosages(node) for dose in objects(d, "dose")]
    system = equals([text(d, "system") for d in doses], UCUM)
    code = equals([text(d, "code") for d in doses], "mg")
    return not doses or system is True and code is True  # `false or {}` is empty, which fails


def ket_4(node: dict[str, Any], base: str, resource: Any) -> bool:
    of_type(node, "MedicationAdministration")
    kind, effective = MA_EFFECTIVE.of(node)
    return _periods_ordered([effective] if kind == "Period" else [])


def ket_5(node: dict[str, Any], base: str, resource: Any) -> bool:
    dosed = any(exists(d, "dose") for d in _ma_dosages(node))
    status = text(node, "status")  # none: `{} implies false` is empty, which fails
    return status is not None and status != "completed" or dosed


def ket_20(node: dict[str, Any], base: str, resource: Any) -> bool:
    """A medication given by reference points at a contained Medication coded in RxNorm or our code system."""
    of_type(node, "MedicationAdministration")
    kind, medication = MA_MEDICATION.of(node)
    contained = node.get("contained")
    if "_contained" in node or not (contained is None or type(contained) is list):
        raise NotPlain("contained")
    codes = []
    for item in contained or []:
        if type(item) is not dict or type(item.get("resourceType")) is not str:
            raise NotPlain("contained")
        if item["resourceType"] == "Medication":
            codes += [text(c, "system") for c in codings(item, "code")]
    if kind != "Reference":
        return True
    # startsWith('#'): empty when there is no reference (and an empty verdict fails), false on ''
    reference = text(medication, "reference")
    prefixed = reference is not None and reference != "" and reference.startswith("#")
    return prefixed and (RXNORM in codes or DOMAIN_MEDICATION in codes)


def ket_6(node: dict[str, Any], base: str, resource: Any) -> bool:
    """A blood-pressure panel has systolic and diastolic components."""
    of_type(node, "Observation")
    panel = BP_PANEL in pairs(codings(node, "code"))  # coded(…, LOINC, {code}), its pairs read once
    components = [pairs(codings(c, "code")) for c in objects(node, "component")]
    return not panel or any(SYSTOLIC in c for c in components) and any(DIASTOLIC in c for c in components)


def ket_7(node: dict[str, Any], base: str, resource: Any) -> bool:
    of_type(node, "Observation")
    panel = BP_PANEL in pairs(codings(node, "code"))
    value = OBS_VALUE.of(node)[1]
    return panel or value is not None or exists(node, "dataAbsentReason")


def at_least_zero(node: dict[str, Any], base: str, resource: Any) -> bool:
    """`value.empty() or value >= 0` (ket-8, ket-ext-1, ket-ext-2) on an Observation or an Extension."""
    value = _score(node, base)
    return value is None or value >= 0


def _score(node: dict[str, Any], base: str) -> int | Decimal | None:
    """The number `value` holds at `base`, or None when it holds none."""
    kind = node.get("resourceType")
    if kind is not None and kind != base:
        raise NotPlain("resourceType")
    found = choice_at(base + ".value")
    if found is None:
        raise NotPlain(base)
    value = found.of(node)[1]
    return None if value is None else number(value)


#: ket-9: the highest score of each instrument (system, code, highest)
SCORE_LIMITS = ((LOINC, "44261-6", 27), (LOINC, "70274-6", 21), (INSTRUMENT, "madrs-total", 60),
                (INSTRUMENT, "qids-sr16-total", 27), (INSTRUMENT, "cadss-total", 92), (INSTRUMENT, "moaas-score", 5),
                (INSTRUMENT, "hamd17-total", 52), (INSTRUMENT, "bprs-positive-total", 28),
                (INSTRUMENT, "cssrs-ideation-severity", 5))
KET_9 = "value.empty() or (" + " and ".join(
    f"(code.coding.where(system = '{s}' and code = '{c}').exists() implies value <= {n})"
    for s, c, n in SCORE_LIMITS) + ")"


def ket_9(node: dict[str, Any], base: str, resource: Any) -> bool:
    value = _score(node, base)
    found = codings(node, "code")
    named = pairs(found)
    return not any(value is not None and value > n for s, c, n in SCORE_LIMITS if (s, c) in named)


def _extended(node: dict[str, Any], url: str) -> bool:
    """`extension(url).exists()` as fhirpathpy's extension() reads the node's `extension` array."""
    found = node.get("extension", [])
    if type(found) is not list:
        raise NotPlain("extension")
    present = False
    for item in found:
        if type(item) is not dict or "url" not in item:
            raise NotPlain("extension")
        present = present or item["url"] == url
    return present


def _seriousness(node: dict[str, Any]) -> list[str | None]:
    of_type(node, "AdverseEvent")
    return [text(c, "code") for c in codings(node, "seriousness")]


def ket_10(node: dict[str, Any], base: str, resource: Any) -> bool:
    codes, criterion = _seriousness(node), _extended(node, SERIOUSNESS)
    return ("Serious" not in codes or criterion) and ("Non-serious" not in codes or not criterion)


def ket_17(node: dict[str, Any], base: str, resource: Any) -> bool:
    codes = _seriousness(node)
    return len(codes) == 1 and codes[0] in ("Serious", "Non-serious")


def ket_18(node: dict[str, Any], base: str, resource: Any) -> bool:
    of_type(node, "AdverseEvent")
    assessed = any(exists(e, "causality") for e in objects(node, "suspectEntity"))
    extended = _extended(node, CAUSALITY)
    return not assessed or not extended


def ket_11(node: dict[str, Any], base: str, resource: Any) -> bool:
    of_type(node, "CarePlan")
    return _periods_ordered(objects(node, "period"))


#: ket-19: the ICD-10-CM codes of the indications the IG accepts
INDICATION = (r"^(F3[123]\.[0-9A-Z]{1,4}|F43\.1[0-9]?|F42\.[0-9A-Z]{1,4}|F41\.1|G89\.[0-9A-Z]{1,4}"
              r"|F1[0-9]\.[0-9A-Z]{1,4}|R45\.851)$")
_INDICATION = re.compile(INDICATION, re.DOTALL)  # as fhirpathpy's matches() compiles it


def ket_19(node: dict[str, Any], base: str, resource: Any) -> bool:
    if "resourceType" in node:
        raise NotPlain("resourceType")
    code = text(node, "code")  # none: matches() is empty, which fails
    return code is not None and _INDICATION.search(code) is not None


#: ket-21, ket-22: the CTCAE grade extension, and the severity codes it must agree with
CTCAE = "https://ketamine-fhir.org/fhir/StructureDefinition/adverse-event-ctcae-grade"
SEVERITY = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
EXTENSION_VALUE = Choice("Extension.value")


def _grade(node: dict[str, Any]) -> int | None:
    """`extension.where(url = CTCAE).value`: the one integer grade, or None when there is none."""
    of_type(node, "AdverseEvent")
    values = []
    for extension in objects(node, "extension"):
        if text(extension, "url") == CTCAE:
            value = EXTENSION_VALUE.of(extension)[1]
            if value is not None:
                values.append(value)
    if not values:
        return None
    if len(values) > 1 or type(values[0]) is not int:
        raise NotPlain("grade")
    return values[0]


def ket_21(node: dict[str, Any], base: str, resource: Any) -> bool:
    """The CTCAE grade agrees with the severity: 1 mild, 2 moderate, 3 or more severe."""
    grade = _grade(node)
    graded = [(text(c, "system"), text(c, "code")) for c in codings(node, "severity")]
    codes = [code for system, code in graded if system == SEVERITY]
    if grade is None or not codes:
        return True
    return (grade != 1 or "mild" in codes) and (grade != 2 or "moderate" in codes) and (grade < 3 or "severe" in codes)


def ket_22(node: dict[str, Any], base: str, resource: Any) -> bool:
    """Grade 4 and 5 events are serious; a grade 5 event's outcome, when given, is fatal."""
    grade = _grade(node)
    serious = "Serious" in _seriousness(node)
    outcome = codings(node, "outcome")
    fatal = "fatal" in [text(c, "code") for c in outcome]
    if grade is None or grade < 4:
        return True
    return serious and (grade != 5 or not exists(node, "outcome") or fatal)


def ket_ext_3(node: dict[str, Any], base: str, resource: Any) -> bool:
    """`value.empty() or (value >= 1 and value <= 5)`: a CTCAE grade."""
    value = _score(node, base)
    return value is None or 1 <= value <= 5


GOAL_DUE, GOAL_START, GOAL_DETAIL = Choice("Goal.target.due"), Choice("Goal.start"), Choice("Goal.target.detail")


def ket_23(node: dict[str, Any], base: str, resource: Any) -> bool:
    """A target due after a duration needs the goal's start."""
    of_type(node, "Goal")
    timed = any([GOAL_DUE.of(t)[0] == "Duration" for t in objects(node, "target")])
    started = GOAL_START.of(node)[1] is not None
    return not timed or started


def ket_24(node: dict[str, Any], base: str, resource: Any) -> bool:
    """A score range target has only a high bound, a UCUM {score}."""
    of_type(node, "Goal")
    verdict = True
    for target in objects(node, "target"):
        kind, detail = GOAL_DETAIL.of(target)
        if kind != "Range":
            continue
        highs = objects(detail, "high")
        system = equals([text(h, "system") for h in highs], UCUM)
        code = equals([text(h, "code") for h in highs], "{score}")
        if exists(detail, "low") or system is not True or code is not True:
            verdict = False
    return verdict


#: ket-25: the BPRS positive total's anchoring (how its four items were rated) and the range that gives the total
ANCHORING = "https://ketamine-fhir.org/fhir/CodeSystem/ketamine-bprs-anchoring"
ANCHORED = f"method.coding.where(system = '{ANCHORING}'"
KET_25 = (f"code.coding.where(system = '{INSTRUMENT}' and code = 'bprs-positive-total').empty() or ({ANCHORED})"
          f".count() = 1 and (value.empty() or (({ANCHORED} and code = '0-6').exists() implies value <= 24) and "
          f"({ANCHORED} and code = '1-7').exists() implies value >= 4))))")


def ket_25(node: dict[str, Any], base: str, resource: Any) -> bool:
    value = _score(node, base)
    total = coded(codings(node, "code"), INSTRUMENT, frozenset({"bprs-positive-total"}))
    method = codings(node, "method")
    anchorings = [c for c in method if text(c, "system") == ANCHORING]
    from_zero = coded(method, ANCHORING, frozenset({"0-6"}))
    from_one = coded(method, ANCHORING, frozenset({"1-7"}))
    in_range = value is None or (not from_zero or value <= 24) and (not from_one or value >= 4)
    return not total or len(anchorings) == 1 and in_range


NATIVE: dict[str, Native] = {
    "dosageInstruction.where(route.coding.where(system='http://snomed.info/sct' and code='47625008').exists())"
    ".all(doseAndRate.rate.exists() or timing.repeat.duration.exists())": ket_1,
    "dosage.route.coding.where(system='http://snomed.info/sct' and code='47625008').exists() implies "
    "(dosage.rate.exists() or effective.ofType(Period).end.exists())": ket_2,
    "dosage.dose.empty() or (dosage.dose.system = 'http://unitsofmeasure.org' and dosage.dose.code = 'mg')": ket_3,
    "effective.ofType(Period).all(start.empty() or end.empty() or end >= start)": ket_4,
    "status = 'completed' implies dosage.dose.exists()": ket_5,
    "medication.ofType(Reference).exists() implies (medication.ofType(Reference).reference.startsWith('#') and "
    "contained.ofType(Medication).code.coding.where(system = 'http://www.nlm.nih.gov/research/umls/rxnorm' or "
    "system = 'https://ketamine-fhir.org/fhir/CodeSystem/domain-medication').exists())": ket_20,
    "code.coding.where(system = 'http://loinc.org' and code = '85354-9').exists() implies (component.where("
    "code.coding.where(system = 'http://loinc.org' and code = '8480-6').exists()).exists() and component.where("
    "code.coding.where(system = 'http://loinc.org' and code = '8462-4').exists()).exists())": ket_6,
    "code.coding.where(system = 'http://loinc.org' and code = '85354-9').empty() implies "
    "(value.exists() or dataAbsentReason.exists())": ket_7,
    "value.empty() or value >= 0": at_least_zero,
    KET_9: ket_9,
    KET_25: ket_25,
    "(seriousness.coding.where(code = 'Serious').exists() implies extension('" + SERIOUSNESS + "').exists()) and "
    "(seriousness.coding.where(code = 'Non-serious').exists() implies extension('" + SERIOUSNESS + "').empty())":
        ket_10,
    "seriousness.coding.count() = 1 and seriousness.coding.all(code = 'Serious' or code = 'Non-serious')": ket_17,
    "suspectEntity.causality.exists() implies extension('" + CAUSALITY + "').empty()": ket_18,
    "period.all(start.empty() or end.empty() or end >= start)": ket_11,
    "code.matches('" + INDICATION.replace("\\", "\\\\") + "')": ket_19,
    "extension.where(url = '" + CTCAE + "').value.empty() or severity.coding.where(system = '" + SEVERITY + "')"
    ".empty() or ((extension.where(url = '" + CTCAE + "').value = 1 implies severity.coding.where(system = '"
    + SEVERITY + "' and code = 'mild').exists()) and (extension.where(url = '" + CTCAE + "').value = 2 implies "
    "severity.coding.where(system = '" + SEVERITY + "' and code = 'moderate').exists()) and (extension.where(url = '"
    + CTCAE + "').value >= 3 implies severity.coding.where(system = '" + SEVERITY + "' and code = 'severe')"
    ".exists()))": ket_21,
    "extension.where(url = '" + CTCAE + "').value.empty() or extension.where(url = '" + CTCAE + "').value < 4 or "
    "(seriousness.coding.where(code = 'Serious').exists() and (extension.where(url = '" + CTCAE + "').value = 5 "
    "implies outcome.empty() or outcome.coding.where(code = 'fatal').exists()))": ket_22,
    "value.empty() or (value >= 1 and value <= 5)": ket_ext_3,
    "target.due.ofType(Duration).exists() implies start.exists()": ket_23,
    "target.detail.ofType(Range).all(low.empty() and high.system = 'http://unitsofmeasure.org' and "
    "high.code = '{score}')": ket_24,
}
