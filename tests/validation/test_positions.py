"""Line and column of findings in JSON text (service/validation/positions.py)."""
from __future__ import annotations

import json

from service.fhirjson import ISSUE_COL, ISSUE_LINE, Finding
from service.validation import ours
from service.validation.positions import locate, positions

TEXT = """{
  "resourceType": "Patient",
  "name": [
    {"family": "Alpha", "given": ["A", "B"]},
    {"text": "x"}
  ],
  "birthDate": "1980-13-01"
}"""


def test_every_element_has_the_position_where_its_value_starts() -> None:
    where = positions(TEXT, "Patient")
    assert where["Patient"] == (1, 1)
    assert where["Patient.name"] == (3, 11)
    assert where["Patient.name[0].given[1]"] == (4, 40)
    assert where["Patient.name[1].text"] == (5, 14)
    assert where["Patient.birthDate"] == (7, 16)


def test_findings_carry_line_and_column_of_their_element_or_its_parent() -> None:
    found = locate([Finding("error", "value", "Patient.birthDate", "bad date"),
                    Finding("error", "required", "Patient.name[1].family", "missing"),
                    Finding("error", "required", "Patient.deceased[x]", "missing")], TEXT, "Patient")
    assert [(f.line, f.column) for f in found] == [(7, 16), (5, 5), (1, 1)]


def test_a_real_validation_is_located_and_rendered_as_hapi_does() -> None:
    findings = ours().validate(json.loads(TEXT))
    issue = next(f for f in locate(findings, TEXT, "Patient") if f.expression == "Patient.birthDate").as_issue()
    assert issue["location"] == ["Patient.birthDate", "Line[7] Col[16]"]
    assert issue["extension"] == [{"url": ISSUE_LINE, "valueInteger": 7}, {"url": ISSUE_COL, "valueInteger": 16}]
    assert issue["expression"] == ["Patient.birthDate"]


def test_without_text_there_is_no_location() -> None:
    assert "location" not in Finding("error", "value", "Patient.birthDate", "bad").as_issue()
