"""Capability check and sandbox-check from the console against a live FHIR server (our facade, playing the
EHR): the checks run for real, their results are kept and shown on the endpoint's page."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from admin.support import csrf
from exchange.conftest import endpoints_file
from flask import Flask
from flask.testing import FlaskClient
from support.serving import live_server

from service.admin import exchange
from service.config import Settings
from service.security.audit import AuditQuery

TOKEN_ENV = "KFHIR_ADMIN_TEST_EHR_TOKEN"  # noqa: S105 - the variable's name, not a token


@pytest.fixture
def ehr(tmp_path: Path) -> Iterator[Any]:
    (tmp_path / "ehr").mkdir()
    with live_server(f"sqlite:///{tmp_path / 'ehr' / 'ehr.db'}", tmp_path / "ehr", KFHIR_LOG_LEVEL="WARNING") as live:
        yield live


@pytest.fixture
def settings(database_url: str, tmp_path: Path, ehr: Any, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """One endpoint, the live server; with its API key from the environment when it wants one."""
    base, token = getattr(ehr, "base", ehr), getattr(ehr, "token", None)
    auth: dict[str, str] = {"type": "none"}
    if token:
        monkeypatch.setenv(TOKEN_ENV, token)
        auth = {"type": "bearer", "token_env": TOKEN_ENV}
    path = endpoints_file(tmp_path, {"name": "live", "base_url": base, "auth": auth, "mode": "transaction"})
    return Settings.load({"database_url": database_url, "endpoints_file": str(path)}, environ={})


def test_capabilities_and_sandbox_check_run_against_the_server_and_show_their_results(
        admin: FlaskClient, app: Flask) -> None:
    token = csrf(admin, "/admin/exchange/endpoints/live")

    checked = admin.post("/admin/exchange/endpoints/live/capabilities", data={"csrf_token": token})
    assert checked.status_code == 302 and checked.headers["Location"].endswith("/endpoints/live#capabilities")
    ran = admin.post("/admin/exchange/endpoints/live/sandbox-check",
                     data={"csrf_token": token, "confirm": "yes", "cleanup": "yes"})
    assert ran.status_code == 302  # at once: the check runs in the background

    running = admin.get("/admin/exchange/endpoints/live").get_data(as_text=True)
    if 'id="sandbox-progress"' in running:  # (a fast server may be done already)
        assert '<meta http-equiv="refresh" content="2">' in running and 'id="sandbox-form"' not in running
        again = admin.post("/admin/exchange/endpoints/live/sandbox-check",
                           data={"csrf_token": token, "confirm": "yes"})
        assert again.status_code in (302, 409)  # one at a time (302: it ended in between)
    page = _finished(admin, "/admin/exchange/endpoints/live")
    assert '<span class="ok">OK</span>' in page and "FHIR 4.0.1; transaction yes" in page
    report = page[page.index('id="sandbox-report"'):]
    assert "PASSED" in report and "every step passed" in report
    for step in ("capabilities", "push administration", "read back and compare", "cleanup"):
        assert f'<th scope="row">{step}</th><td class="ok">PASS</td>' in report
    sandbox = exchange.latest(app.extensions["kfhir"].engine, "live", exchange.SANDBOX)
    assert sandbox is not None and sandbox.passed and sandbox.detail and sandbox.detail["cleanup"] is True
    overview = admin.get("/admin/exchange").get_data(as_text=True)
    assert "FHIR 4.0.1; transaction yes" in overview


def _finished(admin: FlaskClient, path: str, timeout: float = 120) -> str:
    """The endpoint's page once no sandbox-check runs (the page refreshes itself until then; a test asks again)."""
    deadline = time.monotonic() + timeout
    while True:
        page = admin.get(path).get_data(as_text=True)
        if 'id="sandbox-progress"' not in page:
            return page
        assert time.monotonic() < deadline, "sandbox-check still running"
        time.sleep(0.5)


def test_a_sandbox_check_that_fails_is_a_failure_in_the_trail_and_cleans_up(
        admin: FlaskClient, app: Flask, ehr: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.exchange import sandbox

    real = sandbox._Run.run  # noqa: SLF001 - the real run, with one step made to fail after records were written

    def failing(self: Any) -> Any:
        original = self.client.read

        def read(resource_type: str, resource_id: str) -> Any:
            raise sandbox.FhirError(f"GET {resource_type}/{resource_id}: 500 the test's failure", 500)
        self.client.read = read
        try:
            return real(self)
        finally:
            self.client.read = original
    monkeypatch.setattr(sandbox._Run, "run", failing)  # noqa: SLF001
    token = csrf(admin, "/admin/exchange/endpoints/live")

    assert admin.post("/admin/exchange/endpoints/live/sandbox-check",
                      data={"csrf_token": token, "confirm": "yes", "cleanup": "yes"}).status_code == 302
    page = _finished(admin, "/admin/exchange/endpoints/live")

    report = page[page.index('id="sandbox-report"'):]
    assert "FAILED" in report and '<th scope="row">cleanup</th><td class="ok">PASS</td>' in report
    events, _ = app.extensions["kfhir_security"].audit.search(AuditQuery(agent="admin:alice", action="E"))
    (audited,) = [e for e in events if "sandbox-check" in str(e.get("entity"))]
    assert audited["outcome"] != "0" and audited["outcomeDesc"].startswith("failed: ")


def test_sandbox_check_without_its_confirmation_asks_again_on_the_same_page(admin: FlaskClient) -> None:
    token = csrf(admin, "/admin/exchange/endpoints/live")

    response = admin.post("/admin/exchange/endpoints/live/sandbox-check", data={"csrf_token": token})

    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "<h1>Endpoint live</h1>" in page
    assert 'role="alert" id="sandbox-error"' in page and 'id="confirm"' in page and "autofocus" in page
    assert 'id="cleanup" name="cleanup" value="yes">' in page  # unticked, as it was sent
