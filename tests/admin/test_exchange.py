"""Exchange pages on the test client: endpoints, the outbox with filters, a job with its attempts and the
server's OperationOutcome; retry, retry every dead job, and the checks' refusals (both backends)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from admin.support import csrf
from exchange.conftest import ENDPOINTS, endpoints_file
from factories import assessment, treatment_plan
from flask import Flask
from flask.testing import FlaskClient

from service.admin import exchange
from service.config import Settings
from service.exchange.outbox import Failure, JobQuery
from service.security.audit import AuditQuery
from service.store.engine import session
from service.store.models import EndpointRow

OUTCOME = {"resourceType": "OperationOutcome", "issue": [
    {"severity": "error", "code": "invalid", "diagnostics": "Observation.code: unknown LOINC code",
     "expression": ["Observation.code"]}]}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The shared settings with the exchange tests' endpoints (none reachable: nothing is sent here)."""
    return Settings.load({"database_url": database_url, "endpoints_file": str(endpoints_file(tmp_path, *ENDPOINTS))},
                         environ={})


def _jobs(app: Flask) -> list[int]:
    """A plan (one job, to ehr) and an assessment (two: ehr and registry); the plan's job dies with a 422."""
    intake = app.extensions["kfhir"].intake
    intake.submit("treatment-plan", treatment_plan())
    intake.submit("assessment", assessment())
    outbox = app.extensions["kfhir"].outbox
    jobs = outbox.list(JobQuery())
    (claimed,) = outbox.claim("test-worker", ["ehr"], limit=1)
    assert claimed.record_kind == "treatment-plan"
    assert outbox.bury("test-worker", claimed.pk, Failure("POST http://ehr.test/fhir: 422 Unprocessable", 422, OUTCOME))
    return [j.pk for j in jobs]


def _text(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.get_data(as_text=True)


def test_exchange_pages_need_sign_in(client: FlaskClient, app: Flask) -> None:
    dead = _jobs(app)[0]
    for path in ("/admin/exchange", "/admin/exchange/outbox", f"/admin/exchange/jobs/{dead}",
                 "/admin/exchange/endpoints/ehr"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/sign-in" in response.headers["Location"], path


def test_actions_without_the_csrf_token_are_refused_and_change_nothing(admin: FlaskClient, app: Flask) -> None:
    dead = _jobs(app)[0]
    for path in (f"/admin/exchange/jobs/{dead}/retry", "/admin/exchange/endpoints/ehr/retry-dead",
                 "/admin/exchange/endpoints/ehr/capabilities", "/admin/exchange/endpoints/ehr/sandbox-check",
                 "/admin/exchange/endpoints/ehr/disable", "/admin/exchange/endpoints/paused/enable"):
        response = admin.post(path, data={"confirm": "yes"})
        assert response.status_code == 403, path
    assert app.extensions["kfhir"].outbox.get(dead).state == "dead"
    endpoints = app.extensions["kfhir"].endpoints
    assert (endpoints.find("ehr").enabled, endpoints.find("paused").enabled) == (True, False)
    assert exchange.latest(app.extensions["kfhir"].engine, "ehr", exchange.CAPABILITIES) is None


def test_the_overview_lists_endpoints_with_counts_and_checks(admin: FlaskClient, app: Flask) -> None:
    _jobs(app)

    page = _text(admin, "/admin/exchange")

    assert '<a href="/admin/exchange/endpoints/ehr">ehr</a>' in page and "http://registry.test/fhir" in page
    assert 'paused</a> <span class="mark">disabled</span>' in page
    assert "never checked" in page
    health = page[page.index('id="health"'):page.index("</table>", page.index('id="health"'))]
    ehr_row = health[health.index('endpoints/ehr">'):health.index("</tr>", health.index('endpoints/ehr">'))]
    # delivered, waiting, retrying after an error, dead
    assert re.findall(r'<td class="num">(?:<a [^>]*>)?(\d+)', ehr_row) == ["0", "1", "0", "1"]
    assert '<td class="status">needs a person</td>' in ehr_row
    alerts = page[page.index('id="alerts"'):page.index("</ul>", page.index('id="alerts"'))]
    assert "ehr: 1 dead job — it needs a person" in alerts
    assert "2 jobs waiting and no outbox worker is running" in alerts  # an assessment for each endpoint
    assert "No outbox worker is running" in page


def test_the_outbox_filters_by_state_endpoint_kind_and_date(admin: FlaskClient, app: Flask) -> None:
    dead, *_ = _jobs(app)

    def listed(query: str) -> list[str]:
        return re.findall(r'<a href="/admin/exchange/jobs/(\d+)">', _text(admin, "/admin/exchange/outbox" + query))

    assert len(listed("")) == 3
    assert listed("?state=dead") == [str(dead)]
    assert len(listed("?endpoint=registry")) == 1 and len(listed("?kind=assessment")) == 2
    assert len(listed("?since=2000-01-01")) == 3 and listed("?since=2999-01-01") == []
    assert listed("?endpoint=registry&kind=treatment-plan") == []


def test_bad_outbox_filters_are_explained_and_nothing_listed(admin: FlaskClient, app: Flask) -> None:
    _jobs(app)

    page = _text(admin, "/admin/exchange/outbox?state=lost&since=yesterday&endpoint=nowhere&after=x", 400)

    for message in ("State must be one of", "The date must be a day", "No endpoint named &#39;nowhere&#39;",
                    "must be job numbers"):
        assert message in page
    assert 'id="jobs"' not in page


def test_the_outbox_pages_with_a_next_link(admin: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.web.admin import exchange_pages

    _jobs(app)
    monkeypatch.setattr(exchange_pages, "PAGE", 1)

    first = _text(admin, "/admin/exchange/outbox?endpoint=ehr&state=")  # ehr has two jobs
    assert len(re.findall(r'/admin/exchange/jobs/\d+">', first)) == 1
    following = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert following and "endpoint=ehr" in following.group(1)
    rest = _text(admin, following.group(1).replace("&amp;", "&"))
    assert len(re.findall(r'/admin/exchange/jobs/\d+">', rest)) == 1 and 'rel="next"' not in rest
    assert re.findall(r'jobs/(\d+)">', rest) != re.findall(r'jobs/(\d+)">', first)


def test_a_job_page_shows_attempts_and_the_servers_operation_outcome(admin: FlaskClient, app: Flask) -> None:
    dead = _jobs(app)[0]

    page = _text(admin, f"/admin/exchange/jobs/{dead}")

    assert f"Outbox job {dead}: dead" in page and "treatment-plan" in page
    assert "POST http://ehr.test/fhir: 422 Unprocessable" in page
    assert "<caption>OperationOutcome from the server</caption>" in page
    assert "<code>Observation.code</code>" in page and "unknown LOINC code" in page
    attempts = page[page.index('id="attempts"'):]
    assert "Attempt 1: failed — dead letter · HTTP 422" in attempts and "test-worker" in attempts
    assert 'id="retry"' in page
    assert page.index('id="now"') < page.index('id="sent"') < page.index('id="attempts"')  # the state first
    assert _text(admin, "/admin/exchange/jobs/999999", 404)
    assert "There is no outbox job" in _text(admin, "/admin/exchange/jobs/99999999999999999999", 404)


def test_retry_queues_a_dead_job_again_and_refuses_a_live_one(admin: FlaskClient, app: Flask) -> None:
    dead = _jobs(app)[0]
    token = csrf(admin, f"/admin/exchange/jobs/{dead}")

    response = admin.post(f"/admin/exchange/jobs/{dead}/retry", data={"csrf_token": token})

    assert response.status_code == 302 and response.headers["Location"].endswith(f"/jobs/{dead}?retried=1")
    assert app.extensions["kfhir"].outbox.get(dead).state == "queued"
    assert "Queued again" in _text(admin, f"/admin/exchange/jobs/{dead}?retried=1")
    again = admin.post(f"/admin/exchange/jobs/{dead}/retry", data={"csrf_token": token})
    assert again.status_code == 409 and "only a dead job can be retried" in again.get_data(as_text=True)
    events, total = app.extensions["kfhir_security"].audit.search(AuditQuery(agent="admin:alice", action="U"))
    assert total == 1 and events[0]["entity"][0]["what"]["display"] == f"outbox job {dead}"  # who retried what


def test_retry_all_dead_of_an_endpoint(admin: FlaskClient, app: Flask) -> None:
    dead = _jobs(app)[0]
    token = csrf(admin, "/admin/exchange/endpoints/ehr")
    assert 'id="retry-dead">Retry all 1 dead job<' in _text(admin, "/admin/exchange/endpoints/ehr")

    response = admin.post("/admin/exchange/endpoints/ehr/retry-dead", data={"csrf_token": token})

    assert response.status_code == 302
    assert "1 dead job queued again" in _text(admin, response.headers["Location"])
    assert app.extensions["kfhir"].outbox.get(dead).state == "queued"
    assert admin.post("/admin/exchange/endpoints/nowhere/retry-dead", data={"csrf_token": token}).status_code == 404


def test_a_capability_check_of_an_unreachable_server_is_kept_as_failed(admin: FlaskClient, app: Flask) -> None:
    token = csrf(admin, "/admin/exchange/endpoints/ehr")

    response = admin.post("/admin/exchange/endpoints/ehr/capabilities", data={"csrf_token": token})

    assert response.status_code == 302
    page = _text(admin, "/admin/exchange/endpoints/ehr")
    assert '<span class="error">FAILED</span>' in page and "http://ehr.test/fhir" in page
    check = exchange.latest(app.extensions["kfhir"].engine, "ehr", exchange.CAPABILITIES)
    assert check is not None and not check.passed and check.run_by == "alice"
    assert "FAILED" in _text(admin, "/admin/exchange")
    events, _ = app.extensions["kfhir_security"].audit.search(AuditQuery(agent="admin:alice", action="E"))
    (audited,) = [e for e in events if "capability check" in str(e.get("entity"))]
    assert audited["outcome"] == "8" and audited["outcomeDesc"].startswith("failed: ")  # a failure, not HTTP 200


def test_sandbox_check_needs_a_ticked_confirmation(admin: FlaskClient, app: Flask) -> None:
    token = csrf(admin, "/admin/exchange/endpoints/ehr")

    response = admin.post("/admin/exchange/endpoints/ehr/sandbox-check", data={"csrf_token": token})

    assert response.status_code == 400 and "SANDBOX-&lt;run id&gt;" in response.get_data(as_text=True)
    with session(app.extensions["kfhir"].engine) as s:
        assert s.query(exchange.EndpointCheckRow).count() == 0
    assert admin.post("/admin/exchange/endpoints/nowhere/sandbox-check",
                      data={"csrf_token": token, "confirm": "yes"}).status_code == 404


def test_no_endpoints_file_says_how_to_configure_one(admin: FlaskClient, app: Flask) -> None:
    with session(app.extensions["kfhir"].engine, write=True) as s:
        s.query(EndpointRow).delete()

    assert "No endpoint is configured" in _text(admin, "/admin/exchange")


def test_an_endpoint_is_disabled_and_enabled_from_the_list_and_the_record_page_says_why_it_was_not_queued(
        admin: FlaskClient, app: Flask) -> None:
    runtime = app.extensions["kfhir"]
    page = _text(admin, "/admin/exchange")
    assert 'aria-label="Disable endpoint ehr"' in page and 'aria-label="Enable endpoint paused"' in page
    assert "file endpoints.yaml" in page  # where each came from

    response = admin.post("/admin/exchange/endpoints/ehr/disable", data={"csrf_token": csrf(admin, "/admin/exchange")})

    assert response.status_code == 302 and response.headers["Location"].endswith("#endpoints-h")
    assert not runtime.endpoints.find("ehr").enabled
    assert "Endpoint ehr disabled." in _text(admin, response.headers["Location"])
    record = runtime.intake.submit("treatment-plan", treatment_plan()).record
    assert runtime.outbox.list(JobQuery(endpoint="ehr")) == []  # nothing new is queued for a disabled endpoint
    shown = _text(admin, f"/admin/records/treatment-plan/{record.id}")
    assert "not queued for <a href=\"/admin/exchange/endpoints/ehr\">ehr</a>: stored while this endpoint was " \
           "disabled" in shown
    events, _ = app.extensions["kfhir_security"].audit.search(AuditQuery(agent="admin:alice", action="U"))
    assert [e["entity"][0]["what"]["display"] for e in events] == ["endpoint ehr"]  # who disabled what
    assert admin.post("/admin/exchange/endpoints/ehr/enable",
                      data={"csrf_token": csrf(admin, "/admin/exchange")}).status_code == 302
    assert runtime.endpoints.find("ehr").enabled
    assert admin.post("/admin/exchange/endpoints/nowhere/disable",
                      data={"csrf_token": csrf(admin, "/admin/exchange")}).status_code == 404
