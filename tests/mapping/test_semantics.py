"""What the mapped elements mean: monitoring minutes counted as the REMS counts them, the weight-based dose as
given (the prescribed one is the plan's), esketamine coded for the route it was given by, and the CTCAE grade in
its own extension beside R4's three-level severity (clinical.md §7), the REMS ready-to-leave time on the session's
visit, and every BPRS positive total with the item anchoring it was scored under (clinical.md §3)."""
from __future__ import annotations

from factories import administration, adverse_event, esketamine_plan, esketamine_session, score
from mapping.support import canonical

from service.domain import rules
from service.domain.kinds import KINDS
from service.mapping import Mapper, map_record, read_fhir

MINUTES = "https://ketamine-fhir.org/fhir/StructureDefinition/post-dose-monitoring-minutes"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CTCAE = "https://ketamine-fhir.org/fhir/StructureDefinition/adverse-event-ctcae-grade"
SEVERITY = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
READY = "https://ketamine-fhir.org/fhir/StructureDefinition/ready-to-leave"
ANCHORING = "https://ketamine-fhir.org/fhir/CodeSystem/ketamine-bprs-anchoring"


def main(mapper: Mapper, kind: str, record: dict[str, object], role: str | None = None) -> dict[str, object]:
    bundle = map_record(kind, canonical(kind, record), mapper).bundle
    for entry in bundle["entry"]:
        if role is None or entry["resource"]["resourceType"] == role:
            return entry["resource"]  # type: ignore[no-any-return]
    raise AssertionError(role)


def test_monitoring_minutes_count_from_the_start_of_dosing(mapper: Mapper) -> None:
    """A compliant 120-minute esketamine session (first device 09:00, monitoring ends 11:00) is sent as 120."""
    session = main(mapper, "administration", esketamine_session(monitoring_ended_at="2026-03-02T11:00:00-05:00"))
    assert [e["valueInteger"] for e in session["extension"] if e["url"] == MINUTES] == [120]


def test_the_weight_based_dose_is_the_dose_given(mapper: Mapper) -> None:
    """17.5 mg to a 70 kg patient is 0.25 mg/kg, whatever the plan prescribed."""
    session = main(mapper, "administration", administration(dose_mg=17.5, weight_kg=70))
    weight_based = session["dosage"]["extension"][0]["valueQuantity"]
    assert (weight_based["value"], weight_based["code"]) == (0.25, "mg/kg")


def test_esketamine_is_a_nasal_spray_only_when_given_nasally(mapper: Mapper) -> None:
    nasal = main(mapper, "administration", esketamine_session())["medicationCodeableConcept"]
    assert [c["code"] for c in nasal["coding"] if c["system"] == RXNORM] == ["2201623"]
    iv = esketamine_session(route="intravenous", dose_mg=14, ended_at="2026-03-02T09:40:00-05:00")
    coded = main(mapper, "administration", iv)["medicationCodeableConcept"]
    assert not [c for c in coded["coding"] if c["system"] == RXNORM]  # no esketamine ingredient code confirmed
    assert [c["code"] for c in coded["coding"]] == ["esketamine"]
    back = read_fhir(map_record("administration", canonical("administration", iv), mapper).bundle, mapper=mapper)
    assert back.record["medication"] == "esketamine" and back.record["route"] == "intravenous"
    order = main(mapper, "treatment-plan", esketamine_plan(route="subcutaneous", infusion_minutes=20,
                                                         dose={"value": 0.5, "unit": "mg/kg"}), "MedicationRequest")
    assert [c["code"] for c in order["medicationCodeableConcept"]["coding"]] == ["esketamine"]


def test_the_ctcae_grade_travels_beside_the_severity_and_comes_back(mapper: Mapper) -> None:
    """Grade 4 (life-threatening) is `severe` in R4's required three-level severity, as grades 3 and 5 are: the
    grade goes in its own extension, the severity keeps one R4 code, and the record reads back with its grade."""
    record = adverse_event(serious=True, seriousness_criteria=["life-threatening"], severity="severe", ctcae_grade=4)
    mapped = map_record("adverse-event", canonical("adverse-event", record), mapper)
    event = mapped.bundle["entry"][0]["resource"]
    assert [e["valueInteger"] for e in event["extension"] if e["url"] == CTCAE] == [4]
    assert [(c["system"], c["code"]) for c in event["severity"]["coding"]] == [(SEVERITY, "severe")]
    assert read_fhir(mapped.bundle, mapper=mapper).record["ctcae_grade"] == 4


def test_the_ready_to_leave_time_is_the_visits_and_keeps_the_rems_rule_working(mapper: Mapper) -> None:
    """The REMS form asks when the patient was judged ready to leave (clinical.md §2): the time goes on the session's
    Encounter beside the end of monitoring, and a session read back from FHIR still shows monitoring ended before
    the patient was ready (the esketamine-left-before-ready finding), as the record it came from did."""
    session = esketamine_session(ready_to_leave_at="2026-03-02T11:20:00-05:00")
    mapped = map_record("administration", canonical("administration", session), mapper)
    by_type = {e["resource"]["resourceType"]: e["resource"] for e in mapped.bundle["entry"]}
    visit = by_type["Encounter"]
    assert [e["valueDateTime"] for e in visit["extension"] if e["url"] == READY] == ["2026-03-02T11:20:00-05:00"]
    assert visit["period"]["end"] == "2026-03-02T11:05:00-05:00"
    assert READY not in str(by_type["MedicationAdministration"])
    back = read_fhir(mapped.bundle, mapper=mapper).record
    assert back["ready_to_leave_at"] == "2026-03-02T11:20:00-05:00"
    loaded = KINDS["administration"].schema().load(canonical("administration", back))
    assert "esketamine-left-before-ready" in {i.rule for i in rules.check("administration", loaded, rules.NO_CONTEXT)}


def test_every_bprs_total_states_its_anchoring_and_comes_back_with_it(mapper: Mapper) -> None:
    """A BPRS positive total is 4-28 with items rated 1-7 and 0-24 with items rated 0-6: the sender must say which
    and a total is never reinterpreted silently (clinical.md §3). Each BPRS+ score Observation states the anchoring
    in `method`, the contract's default 0-6 included; other instruments have none."""
    scores = [score("bprs-positive", 9, anchoring="1-7"), score("bprs-positive", 3, at="2026-03-02T09:30:00-05:00"),
              score("cadss", 12, at="2026-03-02T09:35:00-05:00")]
    mapped = map_record("administration", canonical("administration", administration(scores=scores)), mapper)
    methods = {(o["code"]["coding"][0]["code"], o["valueInteger"]): o.get("method")
               for o in (e["resource"] for e in mapped.bundle["entry"]) if o.get("valueInteger") is not None}
    assert [(c["system"], c["code"]) for c in methods[("bprs-positive-total", 9)]["coding"]] == [(ANCHORING, "1-7")]
    assert [(c["system"], c["code"]) for c in methods[("bprs-positive-total", 3)]["coding"]] == [(ANCHORING, "0-6")]
    assert methods[("cadss-total", 12)] is None
    back = read_fhir(mapped.bundle, mapper=mapper).record["scores"]
    assert sorted((s["instrument"], s["value"], s.get("anchoring")) for s in back) == [
        ("bprs-positive", 3, "0-6"), ("bprs-positive", 9, "1-7"), ("cadss", 12, None)]
