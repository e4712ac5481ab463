"""A refusal of a record's FHIR form names the record fields behind the elements at fault (the mapping knows
which rule wrote which element), with the FHIR path kept as detail."""
from __future__ import annotations

import pytest
from factories import administration, adverse_event, treatment_plan
from flask.testing import FlaskClient
from mapping.support import canonical

from service.errors import Issue, Unprocessable
from service.mapping import Mapper, map_record


def refusal(mapper: Mapper, kind: str, record: dict[str, object]) -> list[Issue]:
    with pytest.raises(Unprocessable) as caught:
        map_record(kind, canonical(kind, record), mapper)
    return caught.value.issues


def test_a_profile_failure_names_the_record_field(mapper: Mapper) -> None:
    issues = refusal(mapper, "treatment-plan", treatment_plan(indication={"code": "trd", "icd10": "F41.9"}))
    assert [(i.field, i.fhir_path) for i in issues] == [("indication.icd10", "Bundle.entry[1].resource.code.coding[1]")]
    assert "ket-19" in issues[0].message


def test_an_offset_fhir_cannot_hold_names_the_datetime_fields(mapper: Mapper) -> None:
    """+14:30 passes ISO 8601 but not FHIR dateTime (offsets up to 14:00): one field each, not FHIR paths."""
    issues = refusal(mapper, "administration", administration(started_at="2026-03-02T09:00:00+14:30",
                                                              ended_at="2026-03-02T09:40:00+14:30"))
    assert {i.field for i in issues} == {"started_at", "ended_at"}
    assert all(i.fhir_path and i.fhir_path.startswith("Bundle.entry[") for i in issues)


def test_an_invariant_on_a_whole_resource_names_the_fields_it_reads(mapper: Mapper) -> None:
    issues = refusal(mapper, "administration", administration(ended_at="2026-03-02T08:40:00-05:00"))
    ket4 = [i for i in issues if "ket-4" in i.message]
    assert {i.field for i in ket4} == {"started_at", "ended_at"}
    assert {i.fhir_path for i in ket4} == {"Bundle.entry[0].resource"}


def test_an_invariant_on_seriousness_names_serious(mapper: Mapper) -> None:
    record = canonical("adverse-event", adverse_event(serious=True))
    record.pop("seriousness_criteria", None)   # the domain rule would refuse this first; the profile must too
    with pytest.raises(Unprocessable) as caught:
        map_record("adverse-event", record, mapper)
    assert [i.field for i in caught.value.issues if "ket-10" in i.message] == ["serious"]


def test_a_code_no_concept_map_knows_names_its_list_item(mapper: Mapper) -> None:
    issues = refusal(mapper, "treatment-plan", treatment_plan(
        screening={"contraindications": [{"code": "pregnancy", "present": True}, {"code": "made-up", "present": True}]}))
    assert [i.field for i in issues] == ["screening.contraindications[1].code"]


def test_the_domain_api_answers_with_the_record_field_and_the_fhir_path(client: FlaskClient) -> None:
    response = client.post("/api/v1/treatment-plans", json=treatment_plan(indication={"code": "trd", "icd10": "F41.9"}))
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert errors[0]["field"] == "indication.icd10"
    assert errors[0]["fhir_path"] == "Bundle.entry[1].resource.code.coding[1]"
