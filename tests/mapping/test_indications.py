"""Indications: ICD-10-CM accepted for any code of the chapters the indications belong to (ket-19, an
extensible binding whose listed codes are preferred), refused outside them; MDSI plans also state the
suicidal ideation as a Condition of its own."""
from __future__ import annotations

import pytest
from factories import treatment_plan
from flask.testing import FlaskClient
from mapping.support import canonical

from service.errors import Unprocessable
from service.mapping import Mapper, map_record, read_fhir

#: Codes of the chapters (F32.x, F33.x, F31.x, F43.1x, F42.x, F41.1, G89.x, F10-F19.x) that the value set does
#: not list: valid ICD-10-CM codes whose format ket-19 accepts (F33.2 is the usual code for TRD).
CHAPTER_CODES = ["F33.2", "F32.2", "F32.A", "F33.3", "F31.5", "F43.12", "F42.2", "F41.1", "G89.21", "F10.239",
                 "F11.20", "F19.10"]
OUTSIDE = ["F34.1", "F41.9", "F33", "F20.9", "Z79.899"]


def plan(icd10: str, code: str = "trd") -> dict[str, object]:
    return canonical("treatment-plan", treatment_plan(indication={"code": code, "icd10": icd10}))


@pytest.mark.parametrize("icd10", CHAPTER_CODES)
def test_any_code_of_the_indication_chapters_is_accepted(mapper: Mapper, icd10: str) -> None:
    mapped = map_record("treatment-plan", plan(icd10), mapper)
    condition = mapped.bundle["entry"][1]["resource"]
    assert {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": icd10} in condition["code"]["coding"]
    assert read_fhir(mapped.bundle, mapper=mapper).record["indication"]["icd10"] == icd10


def test_a_code_outside_the_listed_ones_is_only_a_warning_of_the_extensible_binding(mapper: Mapper) -> None:
    warnings = map_record("treatment-plan", plan("F33.2"), mapper).warnings
    assert any("F33.2" in w["details"]["text"] and "value set" in w["details"]["text"] for w in warnings)
    assert not any("G89.4" in w["details"]["text"] for w in map_record("treatment-plan", plan("G89.4"),
                                                                          mapper).warnings)


@pytest.mark.parametrize("icd10", OUTSIDE)
def test_a_code_outside_the_chapters_is_refused(mapper: Mapper, icd10: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        map_record("treatment-plan", plan(icd10), mapper)
    assert any("ket-19" in issue.message for issue in caught.value.issues)


def test_a_plan_with_f33_2_is_stored(client: FlaskClient) -> None:
    response = client.post("/api/v1/treatment-plans", json=treatment_plan(indication={"code": "trd", "icd10": "F33.2"}))
    assert response.status_code == 201, response.get_json()
    fhir = client.get(f"/api/v1/treatment-plans/{response.get_json()['id']}/fhir").get_json()
    codes = [c["code"] for e in fhir["entry"] if e["resource"]["resourceType"] == "Condition"
             for c in e["resource"]["code"]["coding"]]
    assert "F33.2" in codes


def test_mdsi_yields_the_suicidal_ideation_condition_too(mapper: Mapper) -> None:
    mapped = map_record("treatment-plan", plan("F33.2", code="mdd-acute-suicidality"), mapper)
    conditions = [e for e in mapped.bundle["entry"] if e["resource"]["resourceType"] == "Condition"]
    assert len(conditions) == 2
    codes = [{c["code"] for c in e["resource"]["code"]["coding"]} for e in conditions]
    assert codes[1] == {"6471006", "R45.851"}
    assert [a["reference"] for a in mapped.bundle["entry"][0]["resource"]["addresses"]] == \
        [e["fullUrl"] for e in conditions]
    back = read_fhir(mapped.bundle, mapper=mapper).record
    assert back["indication"] == {"code": "mdd-acute-suicidality", "icd10": "F33.2"}
    trd = map_record("treatment-plan", plan("F33.2"), mapper)
    assert len([e for e in trd.bundle["entry"] if e["resource"]["resourceType"] == "Condition"]) == 1
