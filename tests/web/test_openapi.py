"""openapi.yaml is the contract: valid OpenAPI 3.1, one operation for each Flask route and method,
and every documented response produced by the real app and validated against it (both backends)."""
from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from factories import FACTORIES, PATIENT, administration, adverse_event, assessment, treatment_plan
from flask import Flask
from flask.testing import FlaskClient
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.exceptions import OpenAPIError
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from werkzeug.test import TestResponse
from werkzeug.wrappers import Request

from service import create_app
from service.config import Settings
from service.domain.kinds import KINDS
from service.web.limits import RateLimiter

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
PLURALS = [k.plural for k in KINDS.values()]
KIND_OF = {k.plural: k.name for k in KINDS.values()}
#: A body larger than this small limit still conforms to the spec, so 413 is the only possible answer.
SMALL_BODY_LIMIT = 64

#: Per kind: records the schema accepts but a clinical rule rejects (422 with `rule`) ...
RULE_ERRORS = {
    "treatment-plan": treatment_plan(period={"start": "2026-03-20", "end": "2026-03-02"}),
    "administration": administration(status="stopped"),
    "adverse-event": adverse_event(serious=True),
    "assessment": assessment(score=99),
}
#: ... and records stored with warnings: notes (severity warning) or clinical findings (high, moderate, low).
WITH_WARNINGS = {
    "treatment-plan": treatment_plan(prior_antidepressant_trials=1),
    "administration": administration(dose_mg=70),
    "adverse-event": adverse_event(administration_external_id="adm-not-stored"),
}


def _json(value: bytes, **_parameters: str) -> Any:
    return json.loads(value)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    # openapi-core reads only application/json (and a few others) as JSON out of the box.
    config = Config(extra_media_type_deserializers={"application/problem+json": _json,
                                                    "application/fhir+json": _json})
    return OpenAPI.from_file_path(str(SPEC_PATH), config=config)


class Contract:
    """Sends requests through Flask test clients and validates every exchange against the spec."""

    def __init__(self, openapi: OpenAPI, client: FlaskClient) -> None:
        self.openapi = openapi
        self.client = client
        self.seen: set[tuple[str, str, int]] = set()

    def send(self, method: str, path: str, status: int, *, conforming: bool | None = True,
             client: FlaskClient | None = None, **kwargs: Any) -> TestResponse:
        """Send, check the status, then the request (conforming or not) and the response against the spec.

        A request the spec does not allow (bad JSON, wrong media type, invalid record, no If-Match, no
        bearer token) must also fail request validation, so spec and service agree on what they refuse.
        `conforming=None`: the request is refused before its content matters (403), only the response is checked.
        """
        sender = client or self.client
        response = sender.open(path, method=method, **kwargs)
        assert response.status_code == status, response.get_data(as_text=True)
        # the token the test client sends by itself is part of the request the spec judges
        request = WerkzeugOpenAPIRequest(Request.from_values(path, method=method, environ_base=dict(
            sender.environ_base), **kwargs))
        if conforming is None:
            pass
        elif conforming:
            self.openapi.validate_request(request)
        else:
            with pytest.raises(OpenAPIError):
                self.openapi.validate_request(request)
        self.openapi.validate_response(request, WerkzeugOpenAPIResponse(response))
        self.seen.add((method.lower(), template(path), status))
        return response

    def statuses(self, method: str, path_template: str) -> set[int]:
        return {s for m, p, s in self.seen if (m, p) == (method, path_template)}


FHIR_LITERALS = {"metadata", "_history", "$validate", "_search"}
#: 401 and 403 are exercised for every secured operation at once (test_every_secured_operation_…)
AUTH_STATUSES = {401, 403}
OUTBOX_OPERATIONS = {("get", "/api/v1/exchange/jobs"), ("get", "/api/v1/exchange/jobs/{job_id}"),
                     ("post", "/api/v1/exchange/jobs/{job_id}/retry"),
                     ("post", "/api/v1/exchange/endpoints/{name}/retry-dead")}


def template(path: str) -> str:
    """The spec path of a request path: `/api/v1/assessments/3f2a…/versions` → `…/{record_id}/versions`."""
    parts = path.split("?", 1)[0].split("/")
    if len(parts) > 2 and parts[1] == "fhir" and parts[2] == "AuditEvent":
        return "/fhir/AuditEvent" + ("/{event_id}" if len(parts) > 3 else "")
    if len(parts) > 2 and parts[1] == "fhir":
        names = ["{resource_type}", "{resource_id}", "_history", "{version}"]
        return "/".join(parts[:2] + [p if p in FHIR_LITERALS or not p else names[i] for i, p in enumerate(parts[2:])])
    if len(parts) > 4 and parts[1:3] == ["api", "v1"] and parts[3] not in ("preview", "exchange"):
        parts[4] = "{record_id}"
    if len(parts) == 4 and parts[1] == "fhir" and parts[3] == "$validate":
        parts[2] = "{resource_type}"
    if len(parts) > 5 and parts[1:4] == ["api", "v1", "exchange"]:
        parts[5] = "{job_id}" if parts[4] == "jobs" else "{name}"
    return "/".join(parts)


def documented(spec: dict[str, Any], method: str, path: str) -> set[int]:
    """The documented statuses the operation's own test exercises (401 and 403 have a test of their own)."""
    return {int(code) for code in spec["paths"][path][method]["responses"]} - AUTH_STATUSES


@pytest.fixture
def contract(openapi: OpenAPI, client: FlaskClient) -> Contract:
    return Contract(openapi, client)


@pytest.fixture
def small_client(settings: Settings) -> Iterator[FlaskClient]:
    """A client of the same database whose app refuses bodies over SMALL_BODY_LIMIT bytes."""
    application = create_app(settings.replace(max_body_bytes=SMALL_BODY_LIMIT))
    application.config["TESTING"] = True
    yield application.test_client()
    application.extensions["kfhir"].engine.dispose()


def _create(contract: Contract, plural: str, record: dict[str, Any]) -> TestResponse:
    return contract.send("POST", f"/api/v1/{plural}", 201, json=record)


def _changed(record: dict[str, Any]) -> dict[str, Any]:
    return record | {"patient": PATIENT | {"birth_date": "1981-02-03"}}


# --- the document itself -----------------------------------------------------------------------

def test_spec_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    validate(spec, cls=OpenAPIV31SpecValidator)


def flask_operations(app: Flask) -> set[tuple[str, str]]:
    """(method, spec path) of every route: `<any(a, b):x>` expands to each literal, `<name>` → `{name}`."""
    converter = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule.startswith("/admin"):  # the HTML console, not an API
            continue
        pieces = converter.split(rule.rule)  # text, conv, args, name, text, conv, args, name, ..., text
        choices: list[list[str]] = []
        for i in range(0, len(pieces), 4):
            choices.append([pieces[i]])
            if i + 3 < len(pieces):
                conv, args, name = pieces[i + 1:i + 4]
                if conv == "any":
                    choices.append([a.strip().strip("'\"") for a in args.split(",")])
                else:
                    choices.append(["{" + name + "}"])
        for path_parts in itertools.product(*choices):
            for method in rule.methods or ():
                if method not in ("HEAD", "OPTIONS"):
                    operations.add((method.lower(), "".join(path_parts)))
    return operations


def spec_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m, path) for path, item in spec["paths"].items() for m in item if m in HTTP_METHODS}


def test_every_route_is_documented_and_every_operation_is_a_route(app: Flask, spec: dict[str, Any]) -> None:
    routes, operations = flask_operations(app), spec_operations(spec)
    assert routes - operations == set(), "routes missing from openapi.yaml"
    assert operations - routes == set(), "operations in openapi.yaml that the app does not serve"


def test_route_conversion_sees_literal_kind_segments(app: Flask) -> None:
    routes = flask_operations(app)
    assert ("put", "/api/v1/adverse-events/{record_id}") in routes
    assert ("get", "/api/v1/assessments/{record_id}/versions") in routes


def test_every_operation_is_exercised_below(spec: dict[str, Any]) -> None:
    """The tests below cover these operations, each with every documented status."""
    exercised = {("get", "/health"), ("get", "/ready"), ("post", "/fhir/$validate"),
                 ("post", "/fhir/{resource_type}/$validate"), ("get", "/api/v1/exchange/endpoints")} | FHIR_OPERATIONS
    exercised |= OUTBOX_OPERATIONS  # in tests/exchange/test_jobs_api.py, with an endpoints file
    exercised |= AUDIT_OPERATIONS
    for plural in PLURALS:
        base = f"/api/v1/{plural}"
        exercised |= {("post", base), ("get", base), ("get", base + "/{record_id}"),
                      ("put", base + "/{record_id}"), ("get", base + "/{record_id}/versions"),
                      ("get", base + "/{record_id}/fhir"), ("post", f"/api/v1/preview/{plural}")}
    assert spec_operations(spec) == exercised


# --- requests and responses against the spec ---------------------------------------------------

def test_health_and_ready(contract: Contract, openapi: OpenAPI, spec: dict[str, Any], tmp_path: Path) -> None:
    assert contract.send("GET", "/health", 200).json == {"status": "ok"}
    assert contract.send("GET", "/ready", 200).json["status"] == "ready"
    never_migrated = Settings.load({"database_url": f"sqlite:///{tmp_path / 'empty.db'}"}, environ={})
    (tmp_path / "a-directory.db").mkdir()
    unreachable = Settings.load({"database_url": f"sqlite:///{tmp_path / 'a-directory.db'}"}, environ={})
    for settings, database in ((never_migrated, "not migrated"), (unreachable, "unreachable")):
        application = create_app(settings)
        try:
            body = contract.send("GET", "/ready", 503, client=application.test_client()).json
        finally:
            application.extensions["kfhir"].engine.dispose()
        assert body["database"] == database
    assert contract.statuses("get", "/health") == documented(spec, "get", "/health")
    assert contract.statuses("get", "/ready") == documented(spec, "get", "/ready")


@pytest.mark.parametrize("plural", PLURALS)
def test_create(plural: str, contract: Contract, small_client: FlaskClient, spec: dict[str, Any]) -> None:
    path, record = f"/api/v1/{plural}", FACTORIES[KIND_OF[plural]]()
    created = _create(contract, plural, record)
    assert created.headers["Location"] == f"{path}/{created.json['id']}"
    assert created.headers["ETag"] == 'W/"1"'
    assert contract.send("POST", path, 200, json=record).json["id"] == created.json["id"]
    again = contract.send("POST", path, 200, data=json.dumps(record), content_type="application/fhir+json")
    assert again.json["version"] == 1
    conflict = contract.send("POST", path, 409, json=_changed(record)).json
    assert conflict["existing_id"] == created.json["id"]
    contract.send("POST", path, 400, conforming=False, data='{"external_id": ', content_type="application/json")
    contract.send("POST", path, 415, conforming=False, data=json.dumps(record), content_type="text/plain")
    invalid = contract.send("POST", path, 422, conforming=False, json=record | {"colour": "red"}).json
    assert invalid["errors"] == [{"field": "colour", "message": "Unknown field."}]
    broken = contract.send("POST", path, 422, json=RULE_ERRORS[KIND_OF[plural]] | {"external_id": "x-2"}).json
    assert all("rule" in e for e in broken["errors"])
    contract.send("POST", path, 413, client=small_client, json=record | {"external_id": "x-3"})
    if KIND_OF[plural] in WITH_WARNINGS:
        warned = _create(contract, plural, WITH_WARNINGS[KIND_OF[plural]] | {"external_id": "x-4"}).json
        assert warned["warnings"] and warned["warnings"][0]["severity"] in ("warning", "high", "moderate", "low")
    assert contract.statuses("post", path) == documented(spec, "post", path)


@pytest.mark.parametrize("plural", PLURALS)
def test_read_and_versions(plural: str, contract: Contract, spec: dict[str, Any]) -> None:
    base, record = f"/api/v1/{plural}", FACTORIES[KIND_OF[plural]]()
    record_id = _create(contract, plural, record).json["id"]
    read = contract.send("GET", f"{base}/{record_id}", 200)
    assert read.json["record"]["external_id"] == record["external_id"]
    contract.send("GET", f"{base}/{uuid.uuid4()}", 404)
    contract.send("PUT", f"{base}/{record_id}", 200, json=_changed(record), headers={"If-Match": read.headers["ETag"]})
    versions = contract.send("GET", f"{base}/{record_id}/versions", 200).json
    assert [v["version"] for v in versions["versions"]] == [1, 2]
    contract.send("GET", f"{base}/{uuid.uuid4()}/versions", 404)
    for path in (base + "/{record_id}", base + "/{record_id}/versions"):
        assert contract.statuses("get", path) == documented(spec, "get", path)


@pytest.mark.parametrize("plural", PLURALS)
def test_list(plural: str, contract: Contract, spec: dict[str, Any]) -> None:
    path, record = f"/api/v1/{plural}", FACTORIES[KIND_OF[plural]]()
    _create(contract, plural, record)
    _create(contract, plural, record | {"external_id": "second"})
    identifier = f"{PATIENT['identifier']['system']}|{PATIENT['identifier']['value']}"
    query = {"patient_identifier": identifier, "date_from": "2026-01-01", "date_to": "2026-12-31T23:59:59+00:00",
             "limit": 1}
    page = contract.send("GET", path, 200, query_string=query).json
    assert page["count"] == 1 and page["next"]
    page = contract.send("GET", page["next"], 200).json
    assert page["count"] == 1 and page["items"][0]["external_id"] == "second"
    assert page["next"] is None  # the last page says so; no empty page to fetch
    assert contract.send("GET", path, 200, query_string={"patient_identifier": "MRN-404"}).json["count"] == 0
    contract.send("GET", path, 400, conforming=False, query_string={"limit": 0})
    contract.send("GET", path, 400, conforming=False, query_string={"date_from": "2026-03-01T09:00"})
    contract.send("GET", path, 400, conforming=False, query_string={"patient_identifier": "https://mrn.example|"})
    assert contract.statuses("get", path) == documented(spec, "get", path)


@pytest.mark.parametrize("plural", PLURALS)
def test_replace(plural: str, contract: Contract, small_client: FlaskClient, spec: dict[str, Any]) -> None:
    record = FACTORIES[KIND_OF[plural]]()
    created = _create(contract, plural, record).json
    path = f"/api/v1/{plural}/{created['id']}"
    changed, v1, v2 = _changed(record), {"If-Match": 'W/"1"'}, {"If-Match": 'W/"2"'}
    contract.send("PUT", path, 428, conforming=False, json=changed)
    contract.send("PUT", f"/api/v1/{plural}/{uuid.uuid4()}", 404, json=changed, headers=v1)
    not_ours = contract.send("PUT", path, 412, conforming=False, json=changed, headers={"If-Match": "abc"}).json
    assert not_ours["current_version"] == 1
    replaced = contract.send("PUT", path, 200, json=changed, headers=v1)
    assert replaced.json["version"] == 2 and replaced.headers["ETag"] == 'W/"2"'
    stale = contract.send("PUT", path, 412, json=record, headers=v1).json
    assert stale["current_version"] == 2
    moved = contract.send("PUT", path, 409, json=changed | {"external_id": "other"}, headers=v2).json
    assert moved["existing_id"] == created["id"]
    contract.send("PUT", path, 422, conforming=False, json=changed | {"colour": "red"}, headers=v2)
    contract.send("PUT", path, 422, json=RULE_ERRORS[KIND_OF[plural]], headers=v2)
    contract.send("PUT", path, 400, conforming=False, data="[1,", content_type="application/json", headers=v2)
    contract.send("PUT", path, 415, conforming=False, data=json.dumps(changed), headers=v2)
    contract.send("PUT", path, 413, client=small_client, json=changed, headers=v2)
    same = contract.send("PUT", path, 200, data=json.dumps(changed), content_type="application/fhir+json",
                         headers={"If-Match": '"2"'})
    assert same.json["version"] == 2
    put = f"/api/v1/{plural}/{{record_id}}"
    assert contract.statuses("put", put) == documented(spec, "put", put)


# --- the mapped FHIR form ---------------------------------------------------------------------

#: A record the schema and rules accept whose FHIR form breaks R4: an identifier system with a space
#: is no FHIR uri (kept from before mapping was checked at intake, or sent to preview).
BAD_SYSTEM = PATIENT | {"identifier": {"system": "clinic mrn", "value": "MRN-001"}}


@pytest.mark.parametrize("plural", PLURALS)
def test_fhir_form_and_preview(plural: str, contract: Contract, small_client: FlaskClient,
                               spec: dict[str, Any]) -> None:
    from service.domain.intake import Intake

    kind, record = KIND_OF[plural], FACTORIES[KIND_OF[plural]]()
    record_id = _create(contract, plural, record).json["id"]
    bundle = contract.send("GET", f"/api/v1/{plural}/{record_id}/fhir", 200)
    assert bundle.content_type == "application/fhir+json" and bundle.headers["ETag"] == 'W/"1"'
    assert bundle.json["type"] == "transaction" and list(bundle.json)[:2] == ["resourceType", "type"]
    contract.send("GET", f"/api/v1/{plural}/{uuid.uuid4()}/fhir", 404)
    preview = f"/api/v1/preview/{plural}"
    shown = contract.send("POST", preview, 200, json=record | {"external_id": "never-stored"}).json
    assert shown["kind"] == kind and shown["bundle"]["entry"]
    assert not any(i["severity"] == "error" for i in shown["outcome"]["issue"])
    listed = contract.send("GET", f"/api/v1/{plural}", 200).json
    assert [i["external_id"] for i in listed["items"]] == [record["external_id"]]  # the preview stored nothing
    contract.send("POST", preview, 400, conforming=False, data="{", content_type="application/json")
    contract.send("POST", preview, 415, conforming=False, data=json.dumps(record), content_type="text/plain")
    contract.send("POST", preview, 413, client=small_client, json=record)
    contract.send("POST", preview, 422, json=RULE_ERRORS[kind])
    unmappable = record | {"external_id": "bad-system", "patient": BAD_SYSTEM}
    refused = contract.send("POST", preview, 422, json=unmappable).json
    assert refused["operation_outcome"]["resourceType"] == "OperationOutcome"
    assert any("identifier" in e["field"] for e in refused["errors"])
    assert contract.send("POST", f"/api/v1/{plural}", 422, json=unmappable).json["operation_outcome"]
    # a record stored before its mapping was checked (an older release) answers 422, not 500
    runtime = contract.client.application.extensions["kfhir"]
    old = Intake(runtime.store).submit(kind, unmappable | {"external_id": "stored-before"}).record
    contract.send("GET", f"/api/v1/{plural}/{old.id}/fhir", 422)
    for method, path in (("get", f"/api/v1/{plural}/{{record_id}}/fhir"), ("post", preview)):
        assert contract.statuses(method, path) == documented(spec, method, path)


# --- FHIR $validate --------------------------------------------------------------------------------

def test_fhir_validate(contract: Contract, small_client: FlaskClient, spec: dict[str, Any]) -> None:
    patient = {"resourceType": "Patient", "gender": "female"}
    for path in ("/fhir/$validate", "/fhir/Patient/$validate"):
        outcome = contract.send("POST", path, 200, json=patient).json
        assert outcome["resourceType"] == "OperationOutcome"
        wrapped = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient | {"gender": "x"}}]}
        assert any(i["severity"] == "error" for i in contract.send("POST", path, 200, json=wrapped).json["issue"])
        contract.send("POST", path, 400, conforming=False, data="{", content_type="application/fhir+json")
        contract.send("POST", path, 415, conforming=False, data="<Patient/>", content_type="application/fhir+xml")
        contract.send("POST", path, 413, client=small_client, json={"resourceType": "Patient", "id": "x" * 200})
    contract.send("POST", "/fhir/Observation/$validate", 400, json=patient)
    contract.send("POST", "/fhir/Patientx/$validate", 404, json=patient)
    for path in ("/fhir/$validate", "/fhir/{resource_type}/$validate"):
        assert contract.statuses("post", path) == documented(spec, "post", path)


# --- the FHIR facade ---------------------------------------------------------------------------------

FHIR_OPERATIONS = {
    ("get", "/fhir/metadata"), ("post", "/fhir"), ("post", "/fhir/"), ("get", "/fhir/_history"),
    ("get", "/fhir/{resource_type}"), ("post", "/fhir/{resource_type}"), ("put", "/fhir/{resource_type}"),
    ("delete", "/fhir/{resource_type}"), ("post", "/fhir/{resource_type}/_search"),
    ("get", "/fhir/{resource_type}/_history"), ("get", "/fhir/{resource_type}/{resource_id}"),
    ("put", "/fhir/{resource_type}/{resource_id}"), ("delete", "/fhir/{resource_type}/{resource_id}"),
    ("patch", "/fhir/{resource_type}/{resource_id}"),
    ("get", "/fhir/{resource_type}/{resource_id}/_history"),
    ("get", "/fhir/{resource_type}/{resource_id}/_history/{version}"),
}
FHIR = "application/fhir+json"
MRN = {"system": "https://clinic.example/mrn", "value": "MRN-777"}


def _patient(**changes: Any) -> dict[str, Any]:
    """A Patient with the MRN; a change to None leaves the element out."""
    patient = {"resourceType": "Patient", "identifier": [MRN], "gender": "female", **changes}
    return {k: v for k, v in patient.items() if v is not None}


def _post(contract: Contract, path: str, status: int, body: Any, **kwargs: Any) -> TestResponse:
    return contract.send("POST", path, status, data=json.dumps(body), content_type=FHIR, **kwargs)


def _put(contract: Contract, path: str, status: int, body: Any, **kwargs: Any) -> TestResponse:
    return contract.send("PUT", path, status, data=json.dumps(body), content_type=FHIR, **kwargs)


def test_fhir_facade(contract: Contract, small_client: FlaskClient, spec: dict[str, Any]) -> None:
    assert contract.send("GET", "/fhir/metadata", 200).json["fhirVersion"] == "4.0.1"
    contract.send("GET", "/fhir/metadata", 406, query_string={"_format": "xml"})
    # create, conditional create, read, update, vread, history, delete
    created = _post(contract, "/fhir/Patient", 201, _patient(id="ignored"))
    pid = created.json["id"]
    assert pid != "ignored" and created.headers["Location"].endswith(f"/fhir/Patient/{pid}/_history/1")
    exists = {"If-None-Exist": f"identifier={MRN['system']}|{MRN['value']}"}
    assert _post(contract, "/fhir/Patient", 200, _patient(), headers=exists).json["id"] == pid
    read = contract.send("GET", f"/fhir/Patient/{pid}", 200)
    assert read.headers["ETag"] == 'W/"1"' and read.json["meta"]["versionId"] == "1"
    _put(contract, f"/fhir/Patient/{pid}", 200, read.json | {"gender": "male"}, headers={"If-Match": 'W/"1"'})
    _put(contract, f"/fhir/Patient/{pid}", 412, read.json, headers={"If-Match": 'W/"1"'})
    _put(contract, "/fhir/Patient/chosen-id", 201, _patient(id="chosen-id", identifier=None))
    _put(contract, "/fhir/Patient/other-id", 400, _patient(id="chosen-id"))
    _put(contract, f"/fhir/Patient/{pid}", 422, read.json | {"gender": "x"})
    _put(contract, "/fhir/Nonsense/1", 404, {"resourceType": "Nonsense", "id": "1"})
    _put(contract, "/fhir/StructureDefinition/ketamine-administration", 405, {"resourceType": "StructureDefinition"})
    contract.send("PUT", f"/fhir/Patient/{pid}", 415, conforming=False, data="<Patient/>", content_type="application/fhir+xml")
    contract.send("PUT", f"/fhir/Patient/{pid}", 413, client=small_client, data=json.dumps(_patient(id=pid, text={"status": "generated", "div": "x" * 100})), content_type=FHIR)
    assert contract.send("GET", f"/fhir/Patient/{pid}/_history/1", 200).json["gender"] == "female"
    contract.send("GET", f"/fhir/Patient/{pid}/_history/9", 404)
    history = contract.send("GET", f"/fhir/Patient/{pid}/_history", 200).json
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"2"', 'W/"1"']
    contract.send("GET", f"/fhir/Patient/{pid}/_history", 400, conforming=False, query_string={"_count": "none"})
    contract.send("GET", "/fhir/Patient/never/_history", 404)
    contract.send("GET", "/fhir/Patient/_history", 200)
    contract.send("GET", "/fhir/Banana/_history", 404)
    contract.send("GET", "/fhir/Patient/_history", 400, query_string={"_since": "yesterday"})
    contract.send("GET", "/fhir/_history", 200, query_string={"_count": 1})
    contract.send("GET", "/fhir/_history", 400, query_string={"_since": "2026"})
    contract.send("DELETE", "/fhir/Patient/chosen-id", 204)
    contract.send("GET", "/fhir/Patient/chosen-id", 410)
    contract.send("GET", "/fhir/Patient/chosen-id/_history/2", 410)
    contract.send("GET", "/fhir/Patient/nobody", 404)
    contract.send("GET", "/fhir/Patient/nobody", 406, headers={"Accept": "application/fhir+xml"})
    contract.send("GET", "/fhir/Patient", 406, headers={"Accept": "application/fhir+json; fhirVersion=3.0"})
    held_by = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "subject": {"reference": f"Patient/{pid}"}}
    referrer = _post(contract, "/fhir/Observation", 201, held_by).json["id"]
    contract.send("DELETE", f"/fhir/Patient/{pid}", 409)
    delete_both = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"Patient/{pid}"}}]}
    _post(contract, "/fhir", 409, delete_both)
    _post(contract, "/fhir/", 409, delete_both)
    contract.send("DELETE", f"/fhir/Observation/{referrer}", 204)
    contract.send("DELETE", "/fhir/Patient/nobody", 404)
    contract.send("DELETE", "/fhir/CodeSystem/ketamine-instrument", 405)
    contract.send("DELETE", "/fhir/Patient", 405)
    contract.send("PATCH", f"/fhir/Patient/{pid}", 405)
    # create's failures
    _post(contract, "/fhir/Patient", 400, {"resourceType": "Practitioner"})
    _post(contract, "/fhir/Banana", 404, {"resourceType": "Banana"})
    _post(contract, "/fhir/ValueSet", 405, {"resourceType": "ValueSet"})
    _post(contract, "/fhir/Patient", 422, _patient(birthDate="02/03/1980"))
    contract.send("POST", "/fhir/Patient", 415, conforming=False, data="<Patient/>", content_type="application/fhir+xml")
    contract.send("POST", "/fhir/Patient", 413, client=small_client, data=json.dumps(_patient(text={"status": "generated", "div": "x" * 100})), content_type=FHIR)
    _post(contract, "/fhir/Patient", 201, _patient())  # a second Patient with the same MRN, unconditionally
    _post(contract, "/fhir/Patient", 412, _patient(), headers=exists)
    # conditional update
    by_npi = "/fhir/Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9990000017"
    npi = {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9990000017"}
    practitioner = {"resourceType": "Practitioner", "identifier": [npi]}
    made = _put(contract, by_npi, 201, practitioner)
    assert _put(contract, by_npi, 200, practitioner | {"name": [{"text": "Dr A"}]}).json["id"] == made.json["id"]
    _put(contract, by_npi, 422, practitioner | {"gender": "x"})
    _put(contract, "/fhir/Practitioner", 400, practitioner)
    _put(contract, "/fhir/Banana?identifier=x", 404, {"resourceType": "Banana"})
    _put(contract, f"/fhir/Patient?identifier={MRN['system']}|{MRN['value']}", 412, _patient())
    # search
    found = contract.send("GET", "/fhir/Patient", 200, query_string={"identifier": f"{MRN['system']}|{MRN['value']}"}).json
    assert found["total"] == 2
    contract.send("GET", "/fhir/Patient", 400, query_string={"colour": "red"})
    lenient = contract.send("GET", "/fhir/Patient", 200, query_string={"colour": "red"}, headers={"Prefer": "handling=lenient"})
    assert lenient.json["total"] == 2
    contract.send("GET", "/fhir/Banana", 404)
    contract.send("GET", "/fhir/$everything", 405)  # an operation, and not one this server runs
    assert contract.send("GET", "/fhir/StructureDefinition", 200, query_string={"url": "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-administration"}).json["total"] == 1
    contract.send("POST", "/fhir/Patient/_search", 200, data={"gender": "male"}, content_type="application/x-www-form-urlencoded")
    contract.send("POST", "/fhir/Patient/_search", 400, data={"birthdate": "gt-yesterday"}, content_type="application/x-www-form-urlencoded")
    contract.send("POST", "/fhir/Banana/_search", 404)
    # batch and transaction
    entry = {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": _patient(identifier=None),
             "request": {"method": "POST", "url": "Patient"}}
    done = _post(contract, "/fhir", 200, {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}).json
    assert done["entry"][0]["response"]["status"] == "201 Created"
    _post(contract, "/fhir", 400, {"resourceType": "Bundle", "type": "collection"})
    dangling = {**entry, "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                      "subject": {"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"}},
                "request": {"method": "POST", "url": "Observation"}}
    _post(contract, "/fhir", 400, {"resourceType": "Bundle", "type": "transaction", "entry": [dangling]})
    banana = {"request": {"method": "POST", "url": "Banana"}, "resource": {"resourceType": "Banana"}}
    _post(contract, "/fhir", 404, {"resourceType": "Bundle", "type": "transaction", "entry": [banana]})
    stale = {"resource": read.json, "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"1"'}}
    _post(contract, "/fhir", 412, {"resourceType": "Bundle", "type": "transaction", "entry": [stale]})
    invalid = {**entry, "resource": _patient(gender="x")}
    _post(contract, "/fhir", 422, {"resourceType": "Bundle", "type": "transaction", "entry": [invalid]})
    contract.send("POST", "/fhir", 415, conforming=False, data="<Bundle/>", content_type="application/fhir+xml")
    contract.send("POST", "/fhir", 413, client=small_client, data=json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [entry] * 3}), content_type=FHIR)
    # `[base]/` answers exactly as `[base]`
    _post(contract, "/fhir/", 200, {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    _post(contract, "/fhir/", 400, {"resourceType": "Bundle", "type": "collection"})
    _post(contract, "/fhir/", 400, {"resourceType": "Bundle", "type": "transaction", "entry": [dangling]})
    _post(contract, "/fhir/", 404, {"resourceType": "Bundle", "type": "transaction", "entry": [banana]})
    _post(contract, "/fhir/", 412, {"resourceType": "Bundle", "type": "transaction", "entry": [stale]})
    _post(contract, "/fhir/", 422, {"resourceType": "Bundle", "type": "transaction", "entry": [invalid]})
    contract.send("POST", "/fhir/", 415, conforming=False, data="<Bundle/>", content_type="application/fhir+xml")
    contract.send("POST", "/fhir/", 413, client=small_client, data=json.dumps(
        {"resourceType": "Bundle", "type": "batch", "entry": [entry] * 3}), content_type=FHIR)
    for method, path in FHIR_OPERATIONS:
        assert contract.statuses(method, path) == documented(spec, method, path), (method, path)


def test_exchange_endpoints(contract: Contract, spec: dict[str, Any], settings: Settings, tmp_path: Path) -> None:
    assert contract.send("GET", "/api/v1/exchange/endpoints", 200).json == {"endpoints": []}
    path = tmp_path / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": [
        {"name": "hapi", "preset": "hapi-public"},
        {"name": "hospital", "base_url": "https://ehr.example/fhir", "mode": "conditional",
         "auth": {"type": "bearer", "token_env": "HOSPITAL_TOKEN"}}]}), encoding="utf-8")
    application = create_app(settings.replace(endpoints_file=str(path)))
    try:
        listed = contract.send("GET", "/api/v1/exchange/endpoints", 200, client=application.test_client()).json
    finally:
        application.extensions["kfhir"].engine.dispose()
    assert [e["name"] for e in listed["endpoints"]] == ["hapi", "hospital"]
    assert listed["endpoints"][0]["base_url"] == "https://hapi.fhir.org/baseR4"
    assert listed["endpoints"][1]["auth"] == {"type": "bearer", "token_env": "HOSPITAL_TOKEN"}
    assert listed["endpoints"][1]["added_by"] == "file endpoints.yaml"
    assert contract.statuses("get", "/api/v1/exchange/endpoints") == documented(spec, "get", "/api/v1/exchange/endpoints")


# --- authentication and authorization ----------------------------------------------------------

AUDIT_OPERATIONS = {("get", "/fhir/AuditEvent"), ("get", "/fhir/AuditEvent/{event_id}")}
SAMPLE = {"{record_id}": "00000000-0000-4000-8000-000000000000", "{resource_type}": "Patient",
          "{resource_id}": "x1", "{version}": "1", "{event_id}": "x1", "{name}": "hapi", "{job_id}": "1"}


def test_every_secured_operation_answers_401_and_403(contract: Contract, app: Flask, spec: dict[str, Any],
                                                     api_key: Any) -> None:
    """Without a token: 401 (and the spec refuses the request too); with a token whose scopes grant nothing
    here (system/Basic.r): 403 — for every operation documenting them, each status it documents."""
    anonymous = FlaskClient(app, app.response_class)
    # a 401 for every operation from one address: more than the failed-authentication limit (tested on its own)
    app.extensions["kfhir_auth_failures"] = RateLimiter(1_000_000)
    useless = {"Authorization": f"Bearer {api_key('system/Basic.r')}"}
    forbidden_entry = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]}
    checked = 0
    for path_template, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            codes = {int(c) for c in operation["responses"]}
            if not codes & AUTH_STATUSES:
                assert operation.get("security") == [], (method, path_template)  # open on purpose
                continue
            path = path_template
            for name, value in SAMPLE.items():
                path = path.replace(name, value)
            body = json.dumps(forbidden_entry if path in ("/fhir", "/fhir/") else {})
            sent = {"data": body, "content_type": "application/fhir+json" if path.startswith("/fhir")
                    else "application/json"}
            contract.send(method.upper(), path, 401, conforming=False, client=anonymous, **sent)
            if 403 in codes:
                contract.send(method.upper(), path, 403, conforming=None, client=anonymous, headers=useless, **sent)
            assert contract.statuses(method, path_template) == codes & AUTH_STATUSES, (method, path_template)
            checked += 1
    assert checked == len(spec_operations(spec)) - 3  # all but /health, /ready and GET /fhir/metadata


def test_fhir_audit_events(contract: Contract, spec: dict[str, Any]) -> None:
    contract.send("GET", "/api/v1/administrations", 200)  # something to audit
    page = contract.send("GET", "/fhir/AuditEvent", 200, query_string={"action": "E", "_count": 1}).json
    event_id = page["entry"][0]["resource"]["id"]
    contract.send("GET", "/fhir/AuditEvent", 400, query_string={"date": "yesterday"})
    contract.send("GET", f"/fhir/AuditEvent/{event_id}", 200)
    contract.send("GET", "/fhir/AuditEvent/no-such-event", 404)
    for method, path in AUDIT_OPERATIONS:
        assert contract.statuses(method, path) == documented(spec, method, path), (method, path)
