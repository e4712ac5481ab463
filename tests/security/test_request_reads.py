"""A request that only reads authenticates its caller, reads and looks up the audit's patient in one read
transaction (store/engine.reading), and a key revoked elsewhere (another process: its own engine) still stops
working at the next request (both backends)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event

from service.security.keys import ApiClients
from service.store.engine import make_engine

FHIR = "application/fhir+json"
MRN = "https://clinic.example/mrn"
pytestmark = pytest.mark.both_backends


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": FHIR}


@pytest.fixture
def elsewhere(database_url: str) -> Iterator[Engine]:
    """The database as another process sees it (the CLI that revokes a key)."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def transactions(engine: Engine) -> list[bool]:
    """Each transaction begun on `engine` from now on: True for a writer's."""
    begun: list[bool] = []

    def begin(conn: Any) -> None:
        begun.append(bool(conn.get_execution_options().get("kfhir_write")))

    event.listen(engine, "begin", begin)
    return begun


def observation(patient_id: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
            "subject": {"reference": f"Patient/{patient_id}"}}


def test_a_read_and_a_search_take_one_read_transaction_and_one_write(app: Flask, client: FlaskClient,
                                                                       api_key: Callable[..., str]) -> None:
    key = api_key("system/Patient.cruds", "system/Observation.cruds")
    made = client.post("/fhir/Patient", json={"resourceType": "Patient", "identifier": [
        {"system": MRN, "value": "R-1"}]}, headers=auth(key))
    pid = made.get_json()["id"]
    oid = client.post("/fhir/Observation", json=observation(pid), headers=auth(key)).get_json()["id"]
    begun = transactions(app.extensions["kfhir"].engine)
    for url in (f"/fhir/Observation/{oid}", f"/fhir/Observation?subject=Patient/{pid}"):
        begun.clear()
        assert client.get(url, headers=auth(key)).status_code == 200
        # the caller's key, the read and the patient's identifier for the audit: one read; the event: one write
        assert begun == [False, True], url
    events = app.extensions["kfhir_security"].audit.search
    from service.security.audit import AuditQuery
    found, _ = events(AuditQuery(entity_type="Observation", action="E"))
    hashes = {e["what"]["identifier"]["value"] for e in found[-1]["entity"] if "identifier" in e.get("what", {})
              and e["type"]["code"] == "1"}
    assert hashes == {app.extensions["kfhir_security"].audit.patient_hash(MRN, "R-1")}


def test_a_key_revoked_by_another_process_stops_working_at_the_next_read(
        anonymous_client: FlaskClient, api_key: Callable[..., str], elsewhere: Engine) -> None:
    key = api_key("system/Patient.rs")
    for url in ("/fhir/Patient", "/fhir/Patient/nobody-here"):
        assert anonymous_client.get(url, headers=auth(key)).status_code in (200, 404)
    [name] = [c.name for c in ApiClients(elsewhere).list() if c.name.startswith("limited-")]
    assert ApiClients(elsewhere).revoke(name)
    for url in ("/fhir/Patient", "/fhir/Patient/nobody-here"):
        assert anonymous_client.get(url, headers=auth(key)).status_code == 401


def test_a_failed_read_still_leaves_its_event(app: Flask, client: FlaskClient, api_key: Callable[..., str]) -> None:
    key = api_key("system/Patient.rs")
    assert client.get("/fhir/Patient/nobody-here", headers=auth(key)).status_code == 404
    assert client.get("/fhir/Patient?birthdate=notadate", headers=auth(key)).status_code == 400
    from service.security.audit import AuditQuery
    found, _ = app.extensions["kfhir_security"].audit.search(AuditQuery(entity_type="Patient"))
    assert [e["outcome"] for e in found[-2:]] == ["4", "4"]


def selects_while(engine: Engine, request: Callable[[], Any]) -> list[str]:
    """The SELECT statements sent through SQLAlchemy while `request` is answered (200)."""
    selects: list[str] = []

    def executed(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(engine, "before_cursor_execute", executed)
    try:
        assert request().status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", executed)
    return selects


def test_the_patients_a_page_names_are_identified_by_the_page_s_own_statement(app: Flask, client: FlaskClient,
                                                                    api_key: Callable[..., str]) -> None:
    key = api_key("system/Patient.cruds", "system/Observation.cruds")
    for n in range(3):
        made = client.post("/fhir/Patient", json={"resourceType": "Patient", "identifier": [
            {"system": MRN, "value": f"P-{n}"}]}, headers=auth(key))
        assert client.post("/fhir/Observation", json=observation(made.get_json()["id"]),
                           headers=auth(key)).status_code == 201
    selects = selects_while(app.extensions["kfhir"].engine,
                            lambda: client.get("/fhir/Observation?status=final", headers=auth(key)))
    # the page with its three patients (pages.named_patient; the caller's key, verified before, is read on the
    # driver's cursor: keys.KEY_STATE)
    assert len(selects) == 1, selects
    from service.security.audit import AuditQuery
    audit = app.extensions["kfhir_security"].audit
    [searched] = audit.search(AuditQuery(entity_type="Observation", action="E"))[0][-1:]
    hashes = {e["what"]["identifier"]["value"] for e in searched["entity"] if "identifier" in e.get("what", {})}
    assert hashes == {audit.patient_hash(MRN, f"P-{n}") for n in range(3)}


def test_a_read_names_its_patients_by_their_identifiers_as_they_stand_in_one_statement(
        app: Flask, client: FlaskClient, api_key: Callable[..., str]) -> None:
    """The read's own statement reads the identifiers of the patient its subject names (store Unit.read); a Patient
    read names itself; a reference the statement does not resolve (versioned) is looked up as before; a changed
    identifier is the one the next read's event hashes."""
    key = api_key("system/Patient.cruds", "system/Observation.cruds")
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient", "identifier": [
        {"system": MRN, "value": "N-1"}]}, headers=auth(key)).get_json()["id"]
    plain = client.post("/fhir/Observation", json=observation(pid), headers=auth(key)).get_json()["id"]
    versioned = client.post("/fhir/Observation", json=observation(f"{pid}/_history/1"),
                            headers=auth(key)).get_json()["id"]
    audit = app.extensions["kfhir_security"].audit
    from service.security.audit import AuditQuery

    def hashed_after(url: str) -> tuple[set[str], int]:
        selects = selects_while(app.extensions["kfhir"].engine, lambda: client.get(url, headers=auth(key)))
        found, _ = audit.search(AuditQuery(action="R"))
        return {e["what"]["identifier"]["value"] for e in found[-1]["entity"]
                if "identifier" in e.get("what", {}) and e["type"]["code"] == "1"}, len(selects)

    assert hashed_after(f"/fhir/Observation/{plain}") == ({audit.patient_hash(MRN, "N-1")}, 1)
    assert hashed_after(f"/fhir/Patient/{pid}") == ({audit.patient_hash(MRN, "N-1")}, 1)
    assert hashed_after(f"/fhir/Observation/{versioned}") == ({audit.patient_hash(MRN, "N-1")}, 2)
    assert client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "identifier": [
        {"system": MRN, "value": "N-2"}]}, headers=auth(key)).status_code == 200
    assert hashed_after(f"/fhir/Observation/{plain}") == ({audit.patient_hash(MRN, "N-2")}, 1)
