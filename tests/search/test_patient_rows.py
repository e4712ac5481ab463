"""`patient` is answered from the `subject` rows that name a Patient (Param.rows): a resource holds no `patient` rows
of its own, and every way of searching by either parameter still finds what R4 says it does."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from service.app.runtime import Runtime
from service.errors import BadRequest
from service.search.query import parse
from service.store.migrate import downgrade, upgrade
from service.store.resources import Unit

pytestmark = pytest.mark.both_backends

PATIENT = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "MRN-1"}]}


def _observation(subject: str, code: str) -> dict[str, object]:
    return {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "urn:c", "code": code}]},
            "subject": {"reference": subject}}


@pytest.fixture
def stored(runtime: Runtime) -> Runtime:
    with runtime.resources.unit(write=True) as unit:
        unit.write("Patient", "p1", PATIENT, [], "PUT")
        unit.write("Observation", "o1", _observation("Patient/p1", "a"), [], "PUT")
        unit.write("Observation", "o2", _observation("Group/g1", "b"), [], "PUT")
        unit.write("Observation", "o3", {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}, [],
                   "PUT")
    return runtime


def _ids(unit: Unit, resource_type: str, *items: tuple[str, str]) -> list[str]:
    found, _ = unit.search(parse(resource_type, list(items)))
    return sorted(r.id for r in found)


def test_a_resource_holds_subject_rows_and_no_patient_rows(stored: Runtime) -> None:
    with stored.engine.connect() as conn:
        rows = conn.execute(text("SELECT param, value FROM fhir_search_index WHERE resource_type = 'Observation' "
                                 "AND param IN ('patient', 'subject') ORDER BY value")).all()
    assert [tuple(r) for r in rows] == [("subject", "Group/g1"), ("subject", "Patient/p1")]


@pytest.mark.parametrize(("items", "expected"), [
    ([("patient", "p1")], ["o1"]),
    ([("patient", "Patient/p1")], ["o1"]),
    ([("subject", "Patient/p1")], ["o1"]),
    ([("subject", "Group/g1")], ["o2"]),
    ([("patient", "Patient/p1,Patient/p2")], ["o1"]),
    ([("patient:missing", "true")], ["o2", "o3"]),  # a Group subject is no patient (R4: subject.where(resolve() is Patient))
    ([("patient:missing", "false")], ["o1"]),
    ([("subject:missing", "false")], ["o1", "o2"]),
    ([("patient.identifier", "urn:mrn|MRN-1")], ["o1"]),
    ([("patient", "Patient/p1"), ("code", "urn:c|a")], ["o1"]),
])
def test_searches_by_patient_and_by_subject(stored: Runtime, items: list[tuple[str, str]], expected: list[str]) -> None:
    with stored.resources.unit() as unit:
        assert _ids(unit, "Observation", *items) == expected


def test_reverse_chains_and_revincludes_through_patient(stored: Runtime) -> None:
    with stored.resources.unit() as unit:
        assert _ids(unit, "Patient", ("_has:Observation:patient:code", "urn:c|a")) == ["p1"]
        assert _ids(unit, "Patient", ("_has:Observation:patient:code", "urn:c|b")) == []
        assert [r.id for r in unit.referring("Observation", "patient", ["Patient/p1", "Group/g1"])] == ["o1"]
        assert [r.id for r in unit.referring("Observation", "subject", ["Patient/p1", "Group/g1"])] == ["o1", "o2"]


@pytest.mark.parametrize("items", [[("patient", "Group/g1")], [("patient:Group.name", "x")]])
def test_patient_naming_another_type_is_refused(items: list[tuple[str, str]]) -> None:
    with pytest.raises(BadRequest) as refused:
        parse("Observation", items)
    (issue,) = refused.value.issues
    assert issue.field == items[0][0] and issue.message.endswith("patient refers to Patient only")


def test_0013_drops_the_patient_rows_a_database_held(runtime: Runtime) -> None:
    with runtime.resources.unit(write=True) as unit:
        unit.write("Observation", "o1", _observation("Patient/p1", "a"), [], "PUT")
    downgrade(runtime.engine, "0012")  # as 0012 left them: a patient row beside each subject row, a DetectedIssue's
    try:
        with runtime.engine.begin() as conn:
            pk = conn.execute(text("SELECT pk FROM fhir_resources WHERE id = 'o1'")).scalar()
            conn.execute(text("INSERT INTO fhir_search_index (resource_pk, resource_type, param, value) "
                              "VALUES (:pk, 'DetectedIssue', 'patient', 'Patient/p1')"), {"pk": pk})
            observation = conn.execute(text("SELECT count(*) FROM fhir_search_index WHERE param = 'patient' "
                                            "AND resource_type = 'Observation'")).scalar()
            assert observation == 1  # 0013's downgrade wrote it back
    finally:
        upgrade(runtime.engine)  # a PostgreSQL database is the session's: it stays at the head
    with runtime.engine.connect() as conn:
        left = conn.execute(text("SELECT resource_type FROM fhir_search_index WHERE param = 'patient'")).scalars()
        assert list(left) == ["DetectedIssue"]
    with runtime.resources.unit() as unit:
        assert _ids(unit, "Observation", ("patient", "p1")) == ["o1"]
