"""Attack (issue 20, item 9): a Host header the caller chooses. With KFHIR_BASE_URL set, the console's audit events
name the configured console address as the server, not the forged host: before this, the sign-in, audit page and
exchange page events all said http://evil.example/admin."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from admin.support import csrf, sign_in
from exchange.conftest import ENDPOINTS, endpoints_file
from flask import Flask
from flask.testing import FlaskClient

from service.admin.accounts import Accounts
from service.config import Settings
from service.security.audit import AuditQuery

BASE = "https://kfhir.example.org"
FORGED = "evil.example"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings.load({"database_url": database_url, "base_url": BASE,
                          "endpoints_file": str(endpoints_file(tmp_path, *ENDPOINTS))}, environ={})


def servers_named(app: Flask) -> list[str]:
    events, _ = app.extensions["kfhir_security"].audit.search(AuditQuery(count=100))
    return [e["agent"][1]["network"]["address"] for e in events]


def test_the_console_audits_the_configured_address_whatever_the_host_header(
        client: FlaskClient, app: Flask, accounts: Accounts) -> None:
    wsgi = app.wsgi_app

    def forged(environ: dict[str, Any], start_response: Any) -> Any:  # every request arrives with Host: evil.example
        return wsgi({**environ, "HTTP_HOST": FORGED, "SERVER_NAME": FORGED}, start_response)

    app.wsgi_app = forged  # type: ignore[method-assign]
    assert sign_in(client).status_code == 302
    assert client.get("/admin/audit").status_code == 200
    token = csrf(client, "/admin/exchange/endpoints/ehr")
    assert client.post("/admin/exchange/endpoints/ehr/capabilities", data={"csrf_token": token}).status_code == 302
    sandbox = client.post("/admin/exchange/endpoints/ehr/sandbox-check",
                          data={"csrf_token": token, "confirm": "yes"})
    assert sandbox.status_code == 302
    deadline = time.monotonic() + 30  # the sandbox check runs in a thread and is audited when it ends
    while len(servers_named(app)) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)

    servers = servers_named(app)
    assert len(servers) >= 4  # sign-in, the audit page, the capability check, the sandbox check
    assert set(servers) == {f"{BASE}/admin"}
