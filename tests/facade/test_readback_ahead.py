"""A created record's main resource is read back into its clinic record before its write's unit of work (every other
SQLite writer waits for a unit): ResourceWritten.ahead maps it and checks the record on what a read of its own finds,
and the unit uses that only while what it read is unchanged. The record is the one the unit would have made itself,
and a change between the two (a referenced resource, a record a rule looked up) is seen."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from facade.test_server import FHIR, as_created, golden_bundle, golden_record, post, the_plan
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from service.app.flows import ReadAhead, ResourceWritten
from service.domain.intake import Intake
from service.store.engine import BEFORE_COMMIT


def a_session(client: FlaskClient) -> dict[str, Any]:
    """A session as an EHR posts it alone: its plan, patient and people stored (by a transaction), its id left out."""
    the_plan(client)
    bundle = as_created(golden_bundle("administration"))
    sent = post(client, "/fhir", bundle | {"entry": [e for e in bundle["entry"] if not e["resource"].get("partOf")]})
    assert sent.status_code == 200, sent.json
    first = sent.json["entry"][0]["response"]["location"].split("/")[1]
    session = client.get(f"/fhir/MedicationAdministration/{first}").json
    session["meta"] = {"profile": session["meta"]["profile"]}  # the profile makes it a record's main resource
    session.pop("id")
    session.pop("identifier", None)  # each POST a record of its own, named by the id the server makes
    return session  # type: ignore[no-any-return]


def records(client: FlaskClient) -> dict[str, dict[str, Any]]:
    """The administration records by external_id (a session posted alone is named by its id)."""
    return {i["record"]["external_id"]: i for i in client.get("/api/v1/administrations?limit=100").json["items"]}


@contextmanager
def watched(app: Flask, monkeypatch: pytest.MonkeyPatch, between: Any = None) -> Iterator[dict[str, list[Any]]]:
    """Counts what the read-back works out ahead and checks inside its unit; `between(ahead)` runs after ahead()."""
    seen: dict[str, list[Any]] = {"ahead": [], "checked_in_unit": []}
    ahead, check = ResourceWritten.ahead, Intake.check

    def spied_ahead(self: ResourceWritten, store: Any, content: dict[str, Any]) -> ReadAhead | None:
        made = ahead(self, store, content)
        seen["ahead"].append(made)
        if between is not None:
            token = BEFORE_COMMIT.set(None)  # a write of the test's own, not the request's: no audit event of it
            try:
                between(made)
            finally:
                BEFORE_COMMIT.reset(token)
        return made

    def spied_check(self: Intake, kind_name: str, payload: Any) -> Any:
        seen["checked_in_unit"].append(kind_name)
        return check(self, kind_name, payload)

    monkeypatch.setattr(ResourceWritten, "ahead", spied_ahead)
    monkeypatch.setattr(Intake, "check", spied_check)
    yield seen


def test_a_created_session_is_read_back_ahead_into_the_record_the_unit_would_make(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    session = a_session(client)
    with watched(app, monkeypatch) as seen:
        made = post(client, "/fhir/MedicationAdministration", session)
    assert made.status_code == 201, made.json
    assert [a is not None for a in seen["ahead"]] == [True] and seen["checked_in_unit"] == []
    monkeypatch.setattr(ResourceWritten, "ahead", lambda *_: None)  # the unit works it out itself
    again = post(client, "/fhir/MedicationAdministration", session)
    assert again.status_code == 201, again.json
    found = records(client)
    ahead, inside = found[made.json["id"]], found[again.json["id"]]
    assert ahead["record"] == inside["record"] | {"external_id": made.json["id"]}
    assert ahead["warnings"] == inside["warnings"]
    engine = app.extensions["kfhir"].engine
    with engine.connect() as connection:  # each session's row names its own record
        linked = dict(connection.exec_driver_sql("SELECT id, record_id FROM fhir_resources WHERE id IN (?, ?)",
                                                 (made.json["id"], again.json["id"])).all())
    assert linked == {made.json["id"]: ahead["id"], again.json["id"]: inside["id"]}


def test_a_created_sessions_read_ahead_switches_no_temp_store(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read ahead reads rows by key and records by identity (keyed): it reads on its connection as that is, a
    write's given back (MEMORY) or a new one, and switches no temp_store (a plain read made it FILE, and the write
    after it, on the same connection, MEMORY again inside the writers' turn)."""
    session = a_session(client)
    statements: list[str] = []
    during: list[list[str]] = []
    engine = app.extensions["kfhir"].engine
    event.listen(engine, "connect", lambda dbapi_conn, _record: dbapi_conn.set_trace_callback(statements.append))
    engine.dispose()  # connections made again, traced
    ahead = ResourceWritten.ahead

    def traced(self: ResourceWritten, store: Any, content: dict[str, Any]) -> ReadAhead | None:
        before = len(statements)
        made = ahead(self, store, content)
        during.append(statements[before:])
        assert made is not None
        return made

    monkeypatch.setattr(ResourceWritten, "ahead", traced)
    for _ in range(2):  # on a new connection, then on the one the first create's write gave back
        made = post(client, "/fhir/MedicationAdministration", session)
        assert made.status_code == 201, made.json
    assert len(during) == 2 and all("BEGIN" in sql for sql in during)  # traced: the read's transaction
    assert not [sql for sql in during[0] + during[1] if sql.startswith("PRAGMA temp_store")]


def test_a_patient_changed_between_the_read_ahead_and_the_unit_is_read_as_it_is_now(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    session = a_session(client)
    patient_id = session["subject"]["reference"].split("/")[1]
    patient = client.get(f"/fhir/Patient/{patient_id}").json
    patient["identifier"][0]["value"] = "MRN-7777"

    def change(ahead: ReadAhead | None) -> None:
        assert ahead is not None and ahead.checked.new.patient_value == "MRN-1001"
        fhir = app.extensions["kfhir"].fhir
        assert fhir.update("Patient", patient_id, patient).status == 200

    with watched(app, monkeypatch, change) as seen:
        made = post(client, "/fhir/MedicationAdministration", session)
    assert made.status_code == 201, made.json
    assert seen["checked_in_unit"] == ["administration"]  # what it read changed: checked again in the unit
    record = records(client)[made.json["id"]]["record"]
    assert record["patient"]["identifier"] == {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-7777"}


def test_a_session_whose_reference_is_deleted_in_between_is_refused(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit's own reference check decides: a resource gone since the read-ahead is not referred to."""
    session = a_session(client)
    performer = client.get(f"/fhir/{session['performer'][0]['actor']['reference']}").json
    nurse = client.post("/fhir/Practitioner", data=json.dumps({k: v for k, v in performer.items() if k != "id"}),
                        content_type=FHIR)
    assert nurse.status_code == 201, nurse.json
    session["performer"] = [{"actor": {"reference": f"Practitioner/{nurse.json['id']}"}}]

    def delete(ahead: ReadAhead | None) -> None:
        assert ahead is not None and ("Practitioner", nurse.json["id"]) in ahead.rows
        app.extensions["kfhir"].fhir.delete("Practitioner", nurse.json["id"])

    with watched(app, monkeypatch, delete):
        made = post(client, "/fhir/MedicationAdministration", session)
    assert made.status_code == 400, made.json
    assert f"Practitioner/{nurse.json['id']} is not a resource of this server" in json.dumps(made.json)


def test_a_record_looked_up_by_a_rule_and_stored_in_between_is_seen(app: Flask) -> None:
    """An adverse event's rules look up its suspected session's record: one stored after the check ahead makes
    holds() false, so the unit checks again (without the session: a warning; with it: none)."""
    runtime = app.extensions["kfhir"]
    intake = Intake(runtime.store)
    event = golden_record("adverse-event")
    checked, seen = intake.check_ahead("adverse-event", event)
    assert seen is not None and [k for k, _ in seen.lookups] == [("administration", "clinic-a", "session-3")]
    assert "suspect-session" in {w.get("rule") for w in checked.warnings}
    assert intake.holds(seen)
    the_session = golden_record("administration") | {"external_id": "session-3"}
    runtime.intake.submit("administration", the_session)
    assert not intake.holds(seen)
    again, now = intake.check_ahead("adverse-event", event)
    assert now is not None and intake.holds(now)
    assert "suspect-session" not in {w.get("rule") for w in again.warnings}
    assert again.new == intake.check("adverse-event", event).new


def test_a_check_that_reads_a_course_of_sessions_is_not_taken_ahead(app: Flask) -> None:
    """An esketamine session's rules read its plan's other sessions, which holds() cannot tell unchanged."""
    intake = Intake(app.extensions["kfhir"].store)
    session = golden_record("administration") | {"medication": "esketamine", "dose_mg": 56, "route": "intranasal",
                                                 "weight_kg": None}
    _, seen = intake.check_ahead("administration", {k: v for k, v in session.items() if v is not None})
    assert seen is None


@pytest.mark.both_backends
def test_a_unit_adopts_only_the_rows_read_before_it_that_are_still_current(app: Flask) -> None:
    resources = app.extensions["kfhir"].resources
    patient = {"resourceType": "Patient", "gender": "female"}
    with resources.unit(write=True) as unit:
        for name in ("kept", "changed", "deleted", "linked"):
            unit.write("Patient", name, patient, [], "PUT")
    keys = [("Patient", n) for n in ("kept", "changed", "deleted", "linked", "absent")]
    with resources.unit() as reader:
        reader.prefetch(keys)
        before = {key: reader.get(*key) for key in keys}
    with resources.unit(write=True) as unit:
        unit.write("Patient", "changed", patient | {"gender": "male"}, [], "PUT")
        unit.write("Patient", "deleted", None, [], "DELETE")
        unit.write("Patient", "absent", patient, [], "PUT")
        unit.link_record("Patient", "linked", "a-record")  # the same version, now naming a record
    with resources.unit(write=True) as unit:
        unit.adopt(before)
        now = {key: unit.get(*key) for key in keys}
    assert now[("Patient", "kept")] is before[("Patient", "kept")]  # taken as read: unchanged
    changed, deleted, absent = now[("Patient", "changed")], now[("Patient", "deleted")], now[("Patient", "absent")]
    assert changed is not None and (changed.version, changed.content["gender"]) == (2, "male")
    assert deleted is not None and deleted.deleted and deleted.version == 2
    assert absent is not None and absent.version == 1  # not held then: read now
    linked = now[("Patient", "linked")]
    assert linked is not None and (linked.version, linked.record_id) == (1, "a-record")
