"""Capability check and sandbox-check from the console against a live FHIR server (our facade, playing the
EHR): the checks run for real, their results are kept and shown on the endpoint's page."""
from __future__ import annotations

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
    assert ran.status_code == 302

    page = admin.get("/admin/exchange/endpoints/live").get_data(as_text=True)
    assert '<span class="ok">OK</span>' in page and "FHIR 4.0.1; transaction yes" in page
    report = page[page.index('id="sandbox-report"'):]
    assert "PASSED" in report and "every step passed" in report
    for step in ("capabilities", "push administration", "read back and compare", "cleanup"):
        assert f'<th scope="row">{step}</th><td class="ok">PASS</td>' in report
    sandbox = exchange.latest(app.extensions["kfhir"].engine, "live", exchange.SANDBOX)
    assert sandbox is not None and sandbox.passed and sandbox.detail and sandbox.detail["cleanup"] is True
    overview = admin.get("/admin/exchange").get_data(as_text=True)
    assert "FHIR 4.0.1; transaction yes" in overview
