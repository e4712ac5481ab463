"""On PostgreSQL a request that only reads runs its statements alone (autocommit: no BEGIN, no COMMIT), and its
audit event is one INSERT committed alone; what the database is sent is read off libpq's own trace of the protocol.
A read still sees only committed work: never a write's rows before it commits, never half of a write."""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event

from service.store.engine import make_engine
from service.store.resources import ResourceStore

FHIR = "application/fhir+json"
MRN = "https://clinic.example/mrn"
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": FHIR}


class Sent:
    """What the app's connections send from now on, as libpq traces it (one line a protocol message)."""

    def __init__(self, engine: Engine, file: BinaryIO) -> None:
        self._file = file
        self._traced: list[Any] = []
        self._engine = engine
        event.listen(engine, "checkout", self._trace)

    def _trace(self, dbapi_conn: Any, *_: Any) -> None:
        if all(dbapi_conn is not c for c in self._traced):
            self._traced.append(dbapi_conn)
            dbapi_conn.pgconn.trace(self._file.fileno())
            dbapi_conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)

    def messages(self) -> list[tuple[str, str]]:
        """(type, rest) of each message sent to the server so far, for instance ("Query", '"BEGIN"')."""
        for conn in self._traced:
            conn.pgconn.untrace()
        self._traced.clear()
        event.remove(self._engine, "checkout", self._trace)
        self._file.seek(0)
        lines = self._file.read().decode("utf-8", "replace").splitlines()
        return [(p[2], p[3] if len(p) > 3 else "") for p in (line.split("\t") for line in lines) if p[0] == "F"]


@pytest.fixture
def patient_and_observation(client: FlaskClient, api_key: Callable[..., str]) -> tuple[str, str, str]:
    key = api_key("system/Patient.cruds", "system/Observation.cruds")
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient", "identifier": [
        {"system": MRN, "value": "R-1"}]}, headers=auth(key)).get_json()["id"]
    oid = client.post("/fhir/Observation", json={
        "resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
        "subject": {"reference": f"Patient/{pid}"}}, headers=auth(key)).get_json()["id"]
    return key, pid, oid


def test_a_read_sends_no_begin_or_commit_and_three_statements(app: Flask, client: FlaskClient, tmp_path: Path,
                                                             patient_and_observation: tuple[str, str, str]) -> None:
    key, pid, oid = patient_and_observation
    for url in (f"/fhir/Observation/{oid}", f"/fhir/Observation?subject=Patient/{pid}"):
        for _ in range(6):  # warm: the key verified once, the statements prepared (psycopg: on their 5th use)
            client.get(url, headers=auth(key))
        with (tmp_path / "trace").open("w+b") as file:
            sent = Sent(app.extensions["kfhir"].engine, file)
            assert client.get(url, headers=auth(key)).status_code == 200
            messages = sent.messages()
        queries = [rest for kind, rest in messages if kind == "Query"]
        assert not [q for q in queries if any(w in q.upper() for w in ("BEGIN", "COMMIT", "ROLLBACK"))], url
        # one round trip each: the key's state, the read (or search) with its patients' identifiers, the audit event
        assert sum(kind == "Sync" for kind, _ in messages) + len(queries) == 3, (url, [k for k, _ in messages])


def test_a_read_while_a_write_is_open_sees_what_was_committed_before_it(
        client: FlaskClient, database_url: str, patient_and_observation: tuple[str, str, str]) -> None:
    """A write that changed a resource and made another, not committed yet: the reads see neither; once it commits,
    both at once."""
    key, pid, _ = patient_and_observation
    writer = make_engine(database_url)
    written, release, failed = threading.Event(), threading.Event(), []

    def write() -> None:
        try:
            with ResourceStore(writer).unit(write=True) as unit:
                unit.write("Patient", pid, {"resourceType": "Patient", "identifier": [
                    {"system": MRN, "value": "R-2"}]}, [], "PUT")
                unit.write("Patient", "made-in-the-open-write", {"resourceType": "Patient"}, [], "PUT")
                written.set()
                release.wait(30)
        except Exception as exc:  # noqa: BLE001 - reported below
            failed.append(exc)
            written.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert written.wait(30) and not failed
        before = client.get(f"/fhir/Patient/{pid}", headers=auth(key))
        assert (before.status_code, before.headers["ETag"]) == (200, 'W/"1"')
        assert before.get_json()["identifier"][0]["value"] == "R-1"
        assert client.get("/fhir/Patient/made-in-the-open-write", headers=auth(key)).status_code == 404
        found = client.get(f"/fhir/Patient?identifier={MRN}|R-2", headers=auth(key)).get_json()
        assert found["total"] == 0 if "total" in found else not found.get("entry")
    finally:
        release.set()
        thread.join(30)
        writer.dispose()
    assert not failed
    after = client.get(f"/fhir/Patient/{pid}", headers=auth(key))
    assert (after.headers["ETag"], after.get_json()["identifier"][0]["value"]) == ('W/"2"', "R-2")
    assert client.get("/fhir/Patient/made-in-the-open-write", headers=auth(key)).status_code == 200


def test_a_write_route_checks_its_key_without_a_transaction(app: Flask, client: FlaskClient, tmp_path: Path,
                                                            patient_and_observation: tuple[str, str, str]) -> None:
    """The key check before a write is one statement alone; the write is one transaction, its BEGIN sent with its
    first statement (store/pipeline.begin_with_first), its rows, version and index rows in one statement
    (store/postgres.py), not three, sent with its audit event and its COMMIT (driver.at_commit), after one switch to
    generic plans for the three (pipeline.GENERIC)."""
    key, pid, _ = patient_and_observation
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
            "subject": {"reference": f"Patient/{pid}"}}
    for _ in range(6):
        client.post("/fhir/Observation", json=body, headers=auth(key))
    with (tmp_path / "trace").open("w+b") as file:
        sent = Sent(app.extensions["kfhir"].engine, file)
        assert client.post("/fhir/Observation", json=body, headers=auth(key)).status_code == 201
        messages = sent.messages()
    assert not [rest for kind, rest in messages if kind == "Query"], messages  # COMMIT too goes in the pipeline
    syncs = [i for i, (kind, _) in enumerate(messages) if kind == "Sync"]
    assert not any("BEGIN" in rest for _, rest in messages[:syncs[0]])  # the key's state, alone
    second = messages[syncs[0]:syncs[1]]  # BEGIN (prepared by now: its name only) and the subject's row
    assert sum(kind == "Bind" for kind, _ in second) == 2, second
    last = messages[syncs[-2]:syncs[-1]]  # the switch, the rows, the audit event and COMMIT (each prepared by now)
    assert sum(kind == "Bind" for kind, _ in last) == 4, last
    # the key's state; BEGIN with the subject's row; the rows written with the audit event and COMMIT
    assert len(syncs) == 3, messages


def test_a_domain_record_post_makes_four_round_trips(app: Flask, client: FlaskClient, tmp_path: Path,
                                                    api_key: Callable[..., str]) -> None:
    """A clinic record queued for an EHR: the key's state; the record looked up; BEGIN with the record's row
    (postgres.hold_record, where it was a round trip of its own), its patient and practitioner found with the rows
    its updates replace (store/postgres.LOOK_UP_SQL, where they were three); its resources, its outbox jobs with the
    endpoints that take it (QUEUE_SQL, where the endpoints' read, the job's INSERT and its older jobs' UPDATE were
    three), the audit event and COMMIT, in one round trip."""
    from factories import administration

    from service.exchange.endpoints import Endpoint

    app.extensions["kfhir"].endpoints.add(Endpoint("ehr", "http://ehr.example/fhir", {}), by="test")
    key = api_key("system/ketamine-records.cruds")
    headers = {"Authorization": f"Bearer {key}"}
    for n in range(12):  # warm: every pooled connection's statements prepared (psycopg: on their 5th use)
        made = client.post("/api/v1/administrations", json=administration(external_id=f"rt-{n}"), headers=headers)
        assert made.status_code == 201, made.get_json()
    with (tmp_path / "trace").open("w+b") as file:
        sent = Sent(app.extensions["kfhir"].engine, file)
        made = client.post("/api/v1/administrations", json=administration(external_id="rt-last"), headers=headers)
        assert made.status_code == 201, made.get_json()
        messages = sent.messages()
    assert not [rest for kind, rest in messages if kind == "Query"], messages
    syncs = [i for i, (kind, _) in enumerate(messages) if kind == "Sync"]
    # each prepared by now (its name only): the key; the record; BEGIN, the switch to generic plans, the record's
    # row, the switch back and LOOK_UP_SQL; the switch, its resources, its jobs, the audit event and COMMIT (the
    # COMMIT ends the switch: none back)
    binds = [sum(kind == "Bind" for kind, _ in messages[start:end]) for start, end in zip([0, *syncs[:-1]], syncs, strict=True)]
    assert binds == [1, 1, 5, 5], messages
