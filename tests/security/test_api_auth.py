"""Deny by default: every /api and /fhir route wants a bearer token (401 without), its scopes decide (403),
per Bundle entry and per `_include` target; /health, /ready and GET /fhir/metadata stay open."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from factories import administration
from flask import Flask
from flask.testing import FlaskClient

from service.web.limits import RateLimiter

FHIR = "application/fhir+json"
MRN = "https://clinic.example/mrn"


def _as_path(rule: str) -> str:
    """A concrete path for a route: the first choice of `any(...)`, `x1` for any other variable."""
    def fill(m: re.Match[str]) -> str:
        if m.group(1) == "any":
            return m.group(2).split(",")[0].strip().strip("'\"")
        return "x1"

    return re.sub(r"<(?:(\w+)(?:\(([^)]*)\))?:)?\w+>", fill, rule)


def secured_operations(app: Flask) -> list[tuple[str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/") or rule.rule.startswith("/fhir")):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if (method, rule.rule) != ("GET", "/fhir/metadata"):
                found.append((method, _as_path(rule.rule)))
    return found


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def patient(mrn: str = "MRN-1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}], **extra}


def post(client: FlaskClient, path: str, body: Any, key: str | None = None, **headers: str) -> Any:
    sent = {"Content-Type": FHIR, **headers, **(auth(key) if key else {})}
    return client.post(path, data=json.dumps(body), headers=sent)


# --- 401 ------------------------------------------------------------------------------------------

def test_every_api_and_fhir_operation_refuses_a_caller_without_a_token(app: Flask, anonymous_client: FlaskClient
                                                                       ) -> None:
    operations = secured_operations(app)
    assert len(operations) > 25  # the domain API, the facade, the audit trail, the exchange API
    # one 401 per operation from one address: past the failed-authentication limit (test_attack_sign_in.py)
    app.extensions["kfhir_auth_failures"] = RateLimiter(1_000_000)
    for method, path in operations:
        response = anonymous_client.open(path, method=method, data=b"{}", content_type="application/json")
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="ketamine-fhir"', (method, path)
        body = response.get_json()
        if path.startswith("/fhir"):
            assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "login"
        else:
            assert response.mimetype == "application/problem+json" and body["status"] == 401


@pytest.mark.parametrize("path", ["/health", "/ready", "/fhir/metadata"])
def test_health_readiness_and_the_capability_statement_are_open(anonymous_client: FlaskClient, path: str) -> None:
    assert anonymous_client.get(path).status_code == 200


def test_unknown_paths_ask_for_credentials_first(anonymous_client: FlaskClient, client: FlaskClient) -> None:
    assert anonymous_client.get("/api/v1/nothing-here").status_code == 401  # existence is not revealed
    assert client.get("/api/v1/nothing-here").status_code == 404


@pytest.mark.parametrize("header", [
    "Bearer kfhir_0123456789abcdef_" + "A" * 43,      # well formed, unknown
    "Bearer not-a-key-nor-a-jwt",
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",      # an unsigned JWT, and no issuer configured
])
def test_a_token_we_do_not_accept_is_401_invalid_token_saying_nothing_more(
        anonymous_client: FlaskClient, header: str) -> None:
    response = anonymous_client.get("/fhir/Patient", headers={"Authorization": header})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    text = response.get_data(as_text=True)
    assert "The bearer token is not valid." in text
    for internal in ("Traceback", "sqlalchemy", "revoked", "hash", "kfhir_", "jwt"):
        assert internal not in text


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "bearer  ", "Token abc"])
def test_other_schemes_and_empty_bearers_are_401_without_an_error_code(
        anonymous_client: FlaskClient, header: str) -> None:
    response = anonymous_client.get("/api/v1/administrations", headers={"Authorization": header})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == 'Bearer realm="ketamine-fhir"'


def test_a_revoked_key_stops_working_at_once(app: Flask, anonymous_client: FlaskClient,
                                             api_key: Callable[..., str]) -> None:
    key = api_key("system/Patient.rs")
    assert anonymous_client.get("/fhir/Patient", headers=auth(key)).status_code == 200
    clients = app.extensions["kfhir_security"].clients
    [name] = [c.name for c in clients.list() if c.name.startswith("limited-")]
    clients.revoke(name)
    assert anonymous_client.get("/fhir/Patient", headers=auth(key)).status_code == 401


# --- 403: scopes per interaction --------------------------------------------------------------------

def test_scopes_decide_each_fhir_interaction(anonymous_client: FlaskClient, api_key: Callable[..., str]) -> None:
    reader = api_key("system/Patient.rs")
    writer = api_key("system/Patient.cu")
    created = post(anonymous_client, "/fhir/Patient", patient(), writer)
    assert created.status_code == 201
    pid = created.get_json()["id"]
    refused = post(anonymous_client, "/fhir/Patient", patient(), reader)
    assert refused.status_code == 403
    assert refused.headers["WWW-Authenticate"] == \
        'Bearer realm="ketamine-fhir", error="insufficient_scope", scope="system/Patient.c"'
    assert refused.get_json()["issue"][0]["code"] == "forbidden"
    assert anonymous_client.get(f"/fhir/Patient/{pid}", headers=auth(reader)).status_code == 200
    assert anonymous_client.get(f"/fhir/Patient/{pid}", headers=auth(writer)).status_code == 403
    assert anonymous_client.get("/fhir/Observation", headers=auth(reader)).status_code == 403
    assert anonymous_client.delete(f"/fhir/Patient/{pid}", headers=auth(writer)).status_code == 403
    # a conditional create searches, so it needs s as well as c
    exists = {"If-None-Exist": f"identifier={MRN}|MRN-1"}
    assert post(anonymous_client, "/fhir/Patient", patient(), writer, **exists).status_code == 403
    both = api_key("system/Patient.cs")
    assert post(anonymous_client, "/fhir/Patient", patient(), both, **exists).status_code == 200
    # system history spans every type
    assert anonymous_client.get("/fhir/_history", headers=auth(reader)).status_code == 403
    assert anonymous_client.get("/fhir/_history", headers=auth(api_key("system/*.s"))).status_code == 200
    # our conformance resources and $validate: any authenticated client
    assert anonymous_client.get("/fhir/StructureDefinition", headers=auth(writer)).status_code == 200


def test_v1_scopes_work_as_their_v2_equivalents(anonymous_client: FlaskClient, api_key: Callable[..., str]) -> None:
    reader, writer = api_key("system/*.read"), api_key("system/*.write")
    assert post(anonymous_client, "/fhir/Patient", patient(), writer).status_code == 201
    assert post(anonymous_client, "/fhir/Patient", patient(), reader).status_code == 403
    assert anonymous_client.get("/fhir/Patient", headers=auth(reader)).status_code == 200


def test_domain_api_scopes(anonymous_client: FlaskClient, api_key: Callable[..., str]) -> None:
    reader, writer = api_key("system/ketamine-records.read"), api_key("system/ketamine-records.write")
    everything_fhir = api_key("system/*.cruds")
    path = "/api/v1/administrations"
    created = anonymous_client.post(path, json=administration(), headers=auth(writer))
    assert created.status_code == 201
    refused = anonymous_client.post(path, json=administration(external_id="2"), headers=auth(reader))
    assert refused.status_code == 403 and refused.mimetype == "application/problem+json"
    assert 'scope="system/ketamine-records.c"' in refused.headers["WWW-Authenticate"]
    assert anonymous_client.get(path, headers=auth(reader)).status_code == 200
    assert anonymous_client.get(f"{path}/{created.get_json()['id']}", headers=auth(reader)).status_code == 200
    assert anonymous_client.get(path, headers=auth(writer)).status_code == 403  # write is c u d, not r s
    assert anonymous_client.get(path, headers=auth(everything_fhir)).status_code == 403  # * is FHIR types only
    assert anonymous_client.get("/api/v1/exchange/endpoints", headers=auth(reader)).status_code == 403
    exchange = api_key("system/ketamine-exchange.read")
    assert anonymous_client.get("/api/v1/exchange/endpoints", headers=auth(exchange)).status_code == 200


# --- 403 inside Bundles and on _include -------------------------------------------------------------

def _entry(resource: dict[str, Any], method: str = "POST", url: str = "") -> dict[str, Any]:
    return {"resource": resource, "request": {"method": method, "url": url or resource["resourceType"]}}


PRACTITIONER = {"resourceType": "Practitioner", "name": [{"family": "Nurse"}]}


def test_a_transaction_with_one_forbidden_entry_fails_whole(
        anonymous_client: FlaskClient, client: FlaskClient, api_key: Callable[..., str]) -> None:
    key = api_key("system/Patient.cruds")
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [_entry(patient("TX-1")), _entry(PRACTITIONER)]}
    refused = post(anonymous_client, "/fhir", bundle, key)
    assert refused.status_code == 403
    assert "entry[1]" in refused.get_json()["issue"][0]["details"]["text"]
    assert 'scope="system/Practitioner.c"' in refused.headers["WWW-Authenticate"]
    assert client.get("/fhir/Patient", query_string={"identifier": f"{MRN}|TX-1"}).get_json()["total"] == 0
    allowed = post(anonymous_client, "/fhir", bundle | {"entry": bundle["entry"][:1]}, key)
    assert allowed.status_code == 200


def test_a_batch_answers_a_forbidden_entry_403_and_runs_the_others(
        anonymous_client: FlaskClient, client: FlaskClient, api_key: Callable[..., str]) -> None:
    key = api_key("system/Patient.cruds")
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [_entry(patient("BATCH-1")), _entry(PRACTITIONER),
                        {"request": {"method": "GET", "url": "Practitioner/abc"}}]}
    answered = post(anonymous_client, "/fhir", bundle, key)
    assert answered.status_code == 200
    statuses = [e["response"]["status"] for e in answered.get_json()["entry"]]
    assert statuses == ["201 Created", "403 Forbidden", "403 Forbidden"]
    assert client.get("/fhir/Practitioner").get_json()["total"] == 0
    assert client.get("/fhir/Patient", query_string={"identifier": f"{MRN}|BATCH-1"}).get_json()["total"] == 1


def test_include_targets_need_their_own_read_scope(
        anonymous_client: FlaskClient, client: FlaskClient, api_key: Callable[..., str]) -> None:
    pid = post(client, "/fhir/Patient", patient("INC-1")).get_json()["id"]
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "PHQ-9"},
                   "subject": {"reference": f"Patient/{pid}"}, "valueInteger": 12}
    assert post(client, "/fhir/Observation", observation).status_code == 201
    narrow, wide = api_key("system/Observation.rs"), api_key("system/Observation.rs", "system/Patient.r")
    typed = {"_include": "Observation:subject:Patient"}
    refused = anonymous_client.get("/fhir/Observation", query_string=typed, headers=auth(narrow))
    assert refused.status_code == 403 and 'scope="system/Patient.r"' in refused.headers["WWW-Authenticate"]
    untyped = {"_include": "Observation:subject"}
    shown = anonymous_client.get("/fhir/Observation", query_string=untyped, headers=auth(narrow)).get_json()
    assert [e["resource"]["resourceType"] for e in shown["entry"]] == ["Observation"]  # the Patient left out
    full = anonymous_client.get("/fhir/Observation", query_string=typed, headers=auth(wide)).get_json()
    assert [e["resource"]["resourceType"] for e in full["entry"]] == ["Observation", "Patient"]


def test_the_capability_statement_describes_the_security(anonymous_client: FlaskClient) -> None:
    security = anonymous_client.get("/fhir/metadata").get_json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert "Bearer" in security["description"] and "system/" in security["description"]
