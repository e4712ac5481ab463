"""The whole demo flow at DEBUG leaves no name, MRN or birth date of a demo patient in any log line."""
from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from support.serving import run_script, script_env

from service.config import Settings
from service.demo import MRN_SYSTEM, demo_records
from service.web.logs import JsonFormatter, RequestFields

FHIR = "application/fhir+json"


def demo_patients() -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for _, record in demo_records():
        seen.setdefault(record["patient"]["identifier"]["value"], record["patient"])
    return list(seen.values())


def phi_patterns() -> list[str]:
    found: set[str] = set()
    for patient in demo_patients():
        found |= {patient["identifier"]["value"], patient["birth_date"], patient["name"]["family"],
                  *patient["name"]["given"]}
        found.add(patient["birth_date"].replace("-", ""))  # 19840514 as well
    return sorted(found)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings.load({"database_url": database_url, "log_level": "DEBUG"}, environ={})


@pytest.fixture
def every_line() -> Iterator[io.StringIO]:
    """Every record any logger emits, formatted as the service formats it (also loggers that do not propagate)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestFields())
    loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger) and not logger.propagate]
    for logger in loggers:
        logger.addHandler(handler)
    yield buffer
    for logger in loggers:
        logger.removeHandler(handler)


def fhir_patient(patient: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Patient",
            "identifier": [{"system": MRN_SYSTEM, "value": patient["identifier"]["value"]}],
            "name": [{"family": patient["name"]["family"], "given": patient["name"]["given"]}],
            "gender": patient["sex"], "birthDate": patient["birth_date"]}


def domain_flow(client: FlaskClient) -> None:
    listed = client.get("/api/v1/administrations?patient_identifier=DEMO-0001&limit=2")
    assert listed.status_code == 200 and listed.json["count"] == 2, listed.json
    client.get(listed.json["next"])
    client.get(f"/api/v1/treatment-plans?patient_identifier={MRN_SYSTEM}|DEMO-0002&date_from=2026-01-01")
    item = listed.json["items"][0]
    read = client.get(f"/api/v1/administrations/{item['id']}")
    assert read.status_code == 200
    client.get(f"/api/v1/administrations/{item['id']}/versions")
    changed = dict(read.json["record"], lot_number="LOT-LOGTEST")
    updated = client.put(f"/api/v1/administrations/{item['id']}", json=changed,
                         headers={"If-Match": read.headers["ETag"]})
    assert updated.status_code == 200, updated.json
    new = dict(changed, external_id="log-test-session", session_number=99)
    assert client.post("/api/v1/administrations", json=new).status_code in (201, 422)
    assert client.post("/api/v1/preview/administrations", json=changed).status_code == 200
    broken = dict(changed, weight_kg="heavy", patient=dict(changed["patient"], sex="unknown-sex"))
    assert client.post("/api/v1/administrations", json=broken).status_code == 422
    assert client.post("/api/v1/assessments", data=b'{"patient": {"name": "Alpha", ',
                       content_type="application/json").status_code == 400


def facade_flow(client: FlaskClient, record_id: str) -> None:
    patients = demo_patients()
    created = client.post("/fhir/Patient", json=fhir_patient(patients[0]), headers={"Content-Type": FHIR})
    assert created.status_code == 201, created.json
    conditional = client.post("/fhir/Patient", json=fhir_patient(patients[1]), headers={
        "Content-Type": FHIR, "If-None-Exist": f"identifier={MRN_SYSTEM}|{patients[1]['identifier']['value']}"})
    assert conditional.status_code in (200, 201)
    for query in (f"identifier={MRN_SYSTEM}|DEMO-0001", "name=Alpha", "family=Testpatient",
                  f"birthdate={patients[0]['birth_date']}", "identifier=DEMO-0003&_count=1"):
        assert client.get(f"/fhir/Patient?{query}").status_code == 200
    assert client.post("/fhir/Patient/_search", data="name=Bravo",
                       content_type="application/x-www-form-urlencoded").status_code == 200
    bundle = client.get(f"/api/v1/administrations/{record_id}/fhir").json
    answer = client.post("/fhir", json=bundle, headers={"Content-Type": FHIR})
    assert answer.status_code == 200, answer.json
    invalid = dict(fhir_patient(patients[2]), gender="sometimes", birthDate=patients[2]["birth_date"] + "T")
    assert client.post("/fhir/Patient", json=invalid, headers={"Content-Type": FHIR}).status_code == 422
    assert client.post("/fhir/$validate", json=invalid, headers={"Content-Type": FHIR}).status_code == 200
    assert client.get("/fhir/Patient?unknown-param=DEMO-0004").status_code == 400


def test_the_demo_flow_at_debug_logs_no_phi(client: FlaskClient, database_url: str, every_line: io.StringIO,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    seeded = run_script("seed-demo", env=script_env(database_url, KFHIR_LOG_LEVEL="DEBUG"), timeout=300, check=True)
    domain_flow(client)
    record_id = client.get("/api/v1/administrations?patient_identifier=DEMO-0005&limit=1").json["items"][0]["id"]
    facade_flow(client, record_id)

    # the control: a DEBUG line that does carry an MRN is captured and found, so silence means something
    logging.getLogger("service.canary").debug("canary %s", "DEMO-0001")
    written = capsys.readouterr().err.splitlines() + seeded.stderr.splitlines()
    lines = written + every_line.getvalue().splitlines()
    assert all(json.loads(line) for line in written), "every line the service writes is one JSON object"
    access = [line for line in written if '"kfhir.access"' in line]
    assert len(access) >= 20
    pattern = re.compile("|".join(re.escape(p) for p in phi_patterns()))
    hits = [line for line in lines if pattern.search(line)]
    canaries = [line for line in hits if '"service.canary"' in line]
    assert len(canaries) == 2  # once on stderr, once in the capture of every logger
    hits = [line for line in hits if line not in canaries]
    print(f"PHI scan: {len(lines)} log lines scanned ({len(written)} written, {len(access)} access lines), "
          f"{len(phi_patterns())} patterns, {len(hits)} hits")
    assert hits == []
