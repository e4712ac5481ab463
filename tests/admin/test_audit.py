"""The audit page: API accesses and the console's own reads and actions, newest first, with filters."""
from __future__ import annotations

import re
from urllib.parse import urlencode

from factories import PATIENT, assessment
from flask import Flask
from flask.testing import FlaskClient

SYSTEM, VALUE = PATIENT["identifier"]["system"], PATIENT["identifier"]["value"]
COURSE = "/admin/patients/course?" + urlencode({"system": SYSTEM, "value": VALUE})


def _rows(client: FlaskClient, query: str = "", status: int = 200) -> list[str]:
    response = client.get("/admin/audit" + query)
    assert response.status_code == status, response.get_data(as_text=True)
    page = response.get_data(as_text=True)
    return re.findall(r'<tr><td>[^<]+</td><th scope="row">(.*?)</tr>', page, re.S)


def test_the_audit_page_needs_sign_in(client: FlaskClient) -> None:
    response = client.get("/admin/audit")

    assert response.status_code == 302 and "/admin/sign-in" in response.headers["Location"]


def test_api_accesses_and_console_reads_of_a_patient_are_listed_newest_first(admin: FlaskClient, app: Flask) -> None:
    app.extensions["kfhir"].intake.submit("assessment", assessment())
    assert admin.get("/api/v1/assessments?patient_identifier=MRN-001").status_code == 200  # an API client read
    assert admin.get(COURSE).status_code == 200  # an admin read

    rows = _rows(admin)

    assert rows[0].startswith("AuditEvent") or "admin:alice" in rows[0]  # this very search is recorded after
    course = next(r for r in rows if "patient course" in r)
    assert "admin:alice" in course and "<td>R</td><td>read</td>" in course
    assert '<td class="num">1</td>' in course  # one patient, named by a keyed hash only
    assert VALUE not in "".join(rows)  # no MRN in the trail
    assert any("search-type" in r and "admin:alice" not in r for r in rows)  # the API client's search


def test_the_trail_filters_by_patient_agent_action_and_date(admin: FlaskClient, app: Flask) -> None:
    app.extensions["kfhir"].intake.submit("assessment", assessment())
    admin.get(COURSE)

    by_patient = _rows(admin, "?" + urlencode({"patient": f"{SYSTEM}|{VALUE}"}))
    assert len(by_patient) == 1 and "patient course" in by_patient[0]
    assert _rows(admin, "?" + urlencode({"patient": f"{SYSTEM}|MRN-999"})) == []
    assert all("admin:alice" in r for r in _rows(admin, "?agent=admin:alice"))
    assert all("<td>R</td>" in r for r in _rows(admin, "?action=R"))
    assert _rows(admin, "?since=2999-01-01") == [] and _rows(admin, "?until=2000-01-01") == []


def test_bad_filters_are_explained(admin: FlaskClient) -> None:
    response = admin.get("/admin/audit?since=monday&action=X&patient=MRN-001&offset=-1")
    page = response.get_data(as_text=True)

    assert response.status_code == 400
    for message in ("must be a day", "The action must be one of", "system|value", "must be a number"):
        assert message in page
