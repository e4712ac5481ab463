"""The audit page: API accesses and the console's own reads and actions, newest first, with filters."""
from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from admin.support import USER, WRONG, csrf, sign_in
from cli.support import kfhir
from factories import PATIENT, assessment
from flask import Flask
from flask.testing import FlaskClient

from service.admin.accounts import MAX_FAILURES, Accounts

SYSTEM, VALUE = PATIENT["identifier"]["system"], PATIENT["identifier"]["value"]
NEW_PASSWORD = "another horse battery staple"  # noqa: S105 - the test account's next password
COURSE = "/admin/patients/course?" + urlencode({"system": SYSTEM, "value": VALUE})


def _rows(client: FlaskClient, query: str = "", status: int = 200) -> list[str]:
    response = client.get("/admin/audit" + query)
    assert response.status_code == status, response.get_data(as_text=True)
    page = response.get_data(as_text=True)
    return re.findall(r'<tr class="outcome-[a-z]+"><td>[^<]+</td><th scope="row">(.*?)</tr>', page, re.S)


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
    response = admin.get("/admin/audit?since=monday&action=X&offset=-1")
    page = response.get_data(as_text=True)

    assert response.status_code == 400
    for message in ("must be a day", "The action must be one of", "must be a number"):
        assert message in page


@pytest.mark.both_backends
def test_the_patient_filter_takes_any_part_of_the_identifier(admin: FlaskClient, app: Flask) -> None:
    app.extensions["kfhir"].intake.submit("assessment", assessment())
    admin.get(COURSE)

    for part in (VALUE, VALUE[2:], VALUE.lower()[:-1], f"{SYSTEM}|{VALUE}"):
        rows = _rows(admin, "?" + urlencode({"patient": part}))
        assert len(rows) == 1 and "patient course" in rows[0], part
    assert _rows(admin, "?patient=NOBODY-HERE") == []
    assert _rows(admin, "?" + urlencode({"patient": f"https://other.example/mrn|{VALUE}"})) == []


def test_sign_ins_failures_a_lockout_and_sign_out_are_in_the_trail(client: FlaskClient, accounts: Accounts) -> None:
    assert sign_in(client, password=WRONG).status_code == 401
    for _ in range(MAX_FAILURES - 1):
        sign_in(client, password=WRONG)
    assert sign_in(client).status_code == 401  # locked: even the right password is refused
    accounts.unlock(USER)
    assert sign_in(client).status_code == 302
    client.post("/admin/sign-out", data={"csrf_token": csrf(client, "/admin/")})
    assert sign_in(client).status_code == 302

    rows = _rows(client, "?agent=admin:alice")
    logins = [r for r in rows if "Login" in r or "Logout" in r]
    texts = [re.sub(r"<[^>]+>", " ", r) for r in reversed(logins)]  # oldest first
    assert ["failed sign-in: wrong username or password" in t for t in texts[:4]] == [True] * 4
    assert "lockout: 5 failed sign-ins; locked until" in texts[4] and "minor failure" in texts[4]
    assert "refused: the username is locked until" in texts[5]
    assert "success (signed in)" in texts[6] and "Logout" in texts[7] and "success (signed out)" in texts[7]
    assert "127.0.0.1" in logins[0] or "note" in logins[0]


def test_unlock_and_password_change_on_the_command_line_are_in_the_trail(
        client: FlaskClient, accounts: Accounts, database_url: str) -> None:
    for _ in range(MAX_FAILURES):
        sign_in(client, password=WRONG)
    assert kfhir("admin", "unlock", USER, database_url=database_url).returncode == 0
    changed = kfhir("admin", "set-password", USER, "--password-stdin", database_url=database_url,
                    stdin=f"{NEW_PASSWORD}\n")
    assert changed.returncode == 0, changed.stderr
    assert sign_in(client, password=NEW_PASSWORD).status_code == 302

    rows = [re.sub(r"<[^>]+>", " ", r) for r in _rows(client, "?action=U")]
    assert any("cli:" in r and "admin account alice: unlocked" in r and "success" in r for r in rows)
    assert any("cli:" in r and "admin account alice: password changed" in r for r in rows)
