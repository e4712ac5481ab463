"""The outbox's jobs over HTTP (shared `app`/`client` fixtures, with an endpoints file), every exchange
checked against openapi.yaml with every documented status."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from exchange.conftest import ENDPOINTS, endpoints_file
from factories import assessment, treatment_plan
from flask import Flask
from flask.testing import FlaskClient
from openapi_core import OpenAPI
from web.test_openapi import OUTBOX_OPERATIONS, Contract, documented
from web.test_openapi import openapi as openapi  # noqa: PLC0414 - the module fixtures, shared
from web.test_openapi import spec as spec  # noqa: PLC0414

from service.config import Settings
from service.exchange.outbox import Failure
from service.params import cursor

pytestmark = pytest.mark.both_backends  # retries lock the job row

JOBS = "/api/v1/exchange/jobs"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The shared settings with an endpoints file, so the shared `app` and `client` fixtures use it."""
    return Settings.load({"database_url": database_url, "endpoints_file": str(endpoints_file(tmp_path, *ENDPOINTS))},
                         environ={})


@pytest.fixture
def contract(openapi: OpenAPI, client: FlaskClient) -> Contract:  # noqa: F811
    return Contract(openapi, client)


def store(client: FlaskClient, plural: str, record: dict[str, Any]) -> str:
    answer = client.post(f"/api/v1/{plural}", json=record)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return str(answer.json["id"])  # type: ignore[index]


def kill(app: Flask, job_id: int) -> None:
    outbox = app.extensions["kfhir"].outbox
    (claimed,) = [j for j in outbox.claim("test", ["ehr", "registry"], limit=10) if j.pk == job_id]
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
                                                              "diagnostics": "Observation.code: unknown"}]}
    assert outbox.bury("test", claimed.pk, Failure("POST : 422 Unprocessable Entity", 422, outcome))


def test_jobs_are_listed_filtered_paged_and_retried(contract: Contract, app: Flask, client: FlaskClient,
                                                    spec: dict[str, Any]) -> None:  # noqa: F811
    plan_id = store(client, "treatment-plans", treatment_plan())
    for n in range(3):
        store(client, "assessments", assessment(external_id=f"a-{n}"))
    listed = contract.send("GET", JOBS, 200).json
    assert listed["count"] == 7 and listed["next"] is None  # plan → ehr; each assessment → ehr and registry
    first = listed["items"][0]
    assert first["record"] == {"id": plan_id, "kind": "treatment-plan", "version": 1}
    assert first["state"] == "queued" and first["attempts"] == 0 and "payload" not in first

    page = contract.send("GET", f"{JOBS}?endpoint=registry&limit=2", 200).json
    assert page["count"] == 2 and page["next"]
    rest = contract.send("GET", page["next"], 200).json
    assert rest["count"] == 1 and rest["next"] is None
    assert contract.send("GET", f"{JOBS}?kind=treatment-plan&state=queued&since=2020-01-01", 200).json["count"] == 1
    assert contract.send("GET", f"{JOBS}?since=2999-01-01T00:00:00Z", 200).json["count"] == 0
    for bad in ("state=lost", "kind=labs", "since=yesterday", "limit=0", "cursor=bm9wZQ", "colour=red",
                f"cursor={cursor(10**30)}"):
        problem = contract.send("GET", f"{JOBS}?{bad}", 400, conforming=bad.startswith(("cursor", "colour"))).json
        assert problem["errors"][0]["field"] == bad.split("=")[0]

    job_id = first["id"]
    detail = contract.send("GET", f"{JOBS}/{job_id}", 200).json
    assert detail["history"] == []
    contract.send("GET", f"{JOBS}/99999", 404)
    contract.send("GET", f"{JOBS}/{10**30}", 404)  # beyond any integer column: still a plain 404
    refused = contract.send("POST", f"{JOBS}/{job_id}/retry", 409).json
    assert "only a dead job" in refused["detail"]
    contract.send("POST", f"{JOBS}/99999/retry", 404)
    contract.send("POST", f"{JOBS}/{2**63}/retry", 404)

    kill(app, job_id)
    dead = contract.send("GET", f"{JOBS}/{job_id}", 200).json
    assert dead["state"] == "dead" and dead["last_outcome"]["issue"][0]["diagnostics"] == "Observation.code: unknown"
    assert [(a["number"], a["result"], a["http_status"]) for a in dead["history"]] == [(1, "dead", 422)]
    assert contract.send("GET", f"{JOBS}?state=dead", 200).json["count"] == 1
    again = contract.send("POST", f"{JOBS}/{job_id}/retry", 200).json
    assert again["state"] == "queued" and again["finished_at"] is None

    kill(app, job_id)
    assert contract.send("POST", "/api/v1/exchange/endpoints/ehr/retry-dead", 200).json == {"endpoint": "ehr",
                                                                                             "queued": 1}
    assert contract.send("POST", "/api/v1/exchange/endpoints/ehr/retry-dead", 200).json["queued"] == 0
    contract.send("POST", "/api/v1/exchange/endpoints/nowhere/retry-dead", 404)
    for method, path in OUTBOX_OPERATIONS:
        assert contract.statuses(method, path) == documented(spec, method, path), (method, path)
