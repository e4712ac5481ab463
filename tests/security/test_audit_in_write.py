"""A write's audit event commits in the write's own transaction: one writer lock and one flush per write, and
no write without its event, no success event for a write that rolled back, whenever the process stops."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from factories import PATIENT, administration
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from service.security.audit import AuditLog, AuditQuery
from service.store.engine import WRITE
from service.store.models import RecordRow, ResourceRow

pytestmark = pytest.mark.both_backends

FHIR = "application/fhir+json"
MRN = {"system": "https://clinic.example/mrn", "value": "MRN-IN-WRITE-1"}
PATIENT_BODY = {"resourceType": "Patient", "identifier": [MRN], "name": [{"family": "Inwrite"}]}


class Crash(BaseException):
    """The process stopping at this point (a BaseException: Flask's handlers, after_request included, do not run)."""


def events(app: Flask) -> list[dict[str, Any]]:
    log: AuditLog = app.extensions["kfhir_security"].audit
    return log.search(AuditQuery(count=200))[0]


def stored(app: Flask, resource_type: str) -> list[str]:
    with Session(app.extensions["kfhir"].engine) as s:
        return list(s.scalars(select(ResourceRow.id).where(ResourceRow.resource_type == resource_type,
                                                           ResourceRow.deleted.is_(False))))


def records(app: Flask) -> int:
    with Session(app.extensions["kfhir"].engine) as s:
        return int(s.scalar(select(func.count()).select_from(RecordRow)) or 0)


@pytest.fixture
def write_commits(app: Flask) -> Iterator[list[int]]:
    """How many write transactions (BEGIN IMMEDIATE on SQLite; the writers' commits, on either database) commit."""
    engine = app.extensions["kfhir"].engine
    seen: list[int] = []

    def committed(conn: Any) -> None:
        if conn.get_execution_options().get(WRITE):
            seen.append(1)

    event.listen(engine, "commit", committed)
    yield seen
    event.remove(engine, "commit", committed)


def references(event_: dict[str, Any]) -> list[str]:
    return [e["what"]["reference"] for e in event_.get("entity", []) if "reference" in e.get("what", {})]


@pytest.mark.parametrize("prefer", ["return=representation", "return=minimal"])
def test_a_fhir_create_commits_once_with_its_event_naming_what_it_made(
        app: Flask, client: FlaskClient, write_commits: list[int], prefer: str) -> None:
    answer = client.post("/fhir/Patient", data=json.dumps(PATIENT_BODY), content_type=FHIR,
                         headers={"Prefer": prefer})
    assert answer.status_code == 201
    assert len(write_commits) == 1  # the resource, its Provenance and its audit event: one transaction
    [made] = stored(app, "Patient")
    [created] = events(app)
    assert created["action"] == "C" and created["outcomeDesc"] == "HTTP 201"
    assert f"Patient/{made}" in references(created)  # the id, even when the answer carried no body


def test_an_events_stored_text_is_the_json_the_column_would_make_of_it(app: Flask, client: FlaskClient) -> None:
    """On SQLite the event's JSON text is made before the INSERT (fhirjson.dumps), not by the column's processor:
    the same text, non-ASCII identifiers (escaped) included."""
    body = {**PATIENT_BODY, "identifier": [{"system": "https://clinic.example/mrn", "value": "MRN-Zoë-中"}],
            "name": [{"family": "Müller"}]}
    assert client.post("/fhir/Patient", data=json.dumps(body), content_type=FHIR).status_code == 201
    engine = app.extensions["kfhir"].engine
    with engine.connect() as connection:
        [(raw,)] = connection.execute(text("SELECT CAST(content AS TEXT) FROM audit_events")).all()
    if engine.dialect.name == "sqlite":
        assert raw == json.dumps(json.loads(raw))  # as json.dumps writes it: `, ` and `: `, ASCII escapes
    assert json.loads(raw) == events(app)[0]


def test_an_update_and_a_delete_each_commit_once_with_their_event(
        app: Flask, client: FlaskClient, write_commits: list[int]) -> None:
    pid = client.post("/fhir/Patient", data=json.dumps(PATIENT_BODY), content_type=FHIR).get_json()["id"]
    assert client.put(f"/fhir/Patient/{pid}", data=json.dumps({**PATIENT_BODY, "id": pid, "gender": "other"}),
                      content_type=FHIR).status_code == 200
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204
    assert len(write_commits) == 3
    seen = [(e["action"], e["outcomeDesc"], references(e)[0]) for e in events(app)]
    assert seen == [("C", "HTTP 201", f"Patient/{pid}"), ("U", "HTTP 200", f"Patient/{pid}"),
                    ("D", "HTTP 204", f"Patient/{pid}")]


def test_a_domain_record_commits_once_with_its_event(app: Flask, client: FlaskClient,
                                                     write_commits: list[int]) -> None:
    made = client.post("/api/v1/administrations", json=administration())
    assert made.status_code == 201, made.get_json()
    assert len(write_commits) == 1  # the record, its FHIR resources, their Provenance, the outbox and the event
    [created] = events(app)
    ids = [e["what"].get("identifier", {}).get("value") for e in created["entity"]]
    assert created["action"] == "C" and made.get_json()["id"] in ids
    digest = app.extensions["kfhir_security"].audit.patient_hash(PATIENT["identifier"]["system"],
                                                                   PATIENT["identifier"]["value"])
    assert digest in ids


def test_a_write_that_stops_after_its_commit_keeps_its_event(app: Flask, client: FlaskClient,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*_: Any, **__: Any) -> Any:
        raise Crash

    monkeypatch.setattr("service.web.fhir_api._written", crash)  # committed; the answer is never made
    with pytest.raises(Crash):
        client.post("/fhir/Patient", data=json.dumps(PATIENT_BODY), content_type=FHIR)
    [made] = stored(app, "Patient")
    [created] = events(app)
    assert created["outcome"] == "0" and f"Patient/{made}" in references(created)


def test_a_domain_record_that_stops_after_its_commit_keeps_its_event(app: Flask, client: FlaskClient,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*_: Any, **__: Any) -> Any:
        raise Crash

    monkeypatch.setattr("service.web.domain_api._answer", crash)
    with pytest.raises(Crash):
        client.post("/api/v1/administrations", json=administration())
    assert records(app) == 1
    [created] = events(app)
    assert created["action"] == "C" and created["outcome"] == "0"


def after_the_event(monkeypatch: pytest.MonkeyPatch, then: BaseException) -> None:
    """Raise `then` once a write's event is in its transaction: made in its unit (record_in) or before (record_ahead)."""
    for name in ("record_in", "record_ahead"):
        def raising(self: AuditLog, session: Session, *rest: Any, _original: Any = AuditLog.__dict__[name]) -> Any:
            _original(self, session, *rest)
            raise then

        monkeypatch.setattr(AuditLog, name, raising)


@pytest.mark.parametrize("post", ["/fhir/Patient", "/api/v1/administrations"])
def test_a_write_that_stops_before_its_commit_leaves_neither_it_nor_its_event(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, post: str) -> None:
    after_the_event(monkeypatch, Crash())  # the event is in the transaction; the process stops before the commit
    body = PATIENT_BODY if post == "/fhir/Patient" else administration()
    with pytest.raises(Crash):
        client.post(post, data=json.dumps(body), content_type=FHIR if post == "/fhir/Patient" else "application/json")
    assert stored(app, "Patient") == [] and stored(app, "Provenance") == [] and records(app) == 0
    assert events(app) == []  # no event claims the write that rolled back


def test_a_write_whose_event_cannot_be_written_is_refused_whole_and_the_refusal_audited(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    after_the_event(monkeypatch, RuntimeError("the audit table refused the row"))
    answer = client.post("/api/v1/administrations", json=administration())
    assert answer.status_code == 503, answer.get_json()
    assert records(app) == 0 and stored(app, "MedicationAdministration") == []
    [refused] = events(app)  # written after the rollback, in a transaction of its own, as failures always were
    assert refused["outcome"] == "8" and refused["outcomeDesc"] == "HTTP 503"


def test_a_write_whose_event_the_database_refuses_is_refused_whole(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The event's INSERT fails in the database (an id taken: the unique key), which on PostgreSQL sends it with the
    COMMIT (store/driver.at_commit): 503, and neither the record, its resources nor the event are stored."""

    from service.security import audit
    from service.security.audit import Access

    log: AuditLog = app.extensions["kfhir_security"].audit
    log.record(Access(interaction="read", status=200, client_id="c", issuer="i", source_address=None, server="s"))
    [taken] = events(app)
    ids, fresh = iter([taken["id"]]), audit.new_id
    monkeypatch.setattr(audit, "new_id", lambda: next(ids, None) or fresh())
    answer = client.post("/api/v1/administrations", json=administration())
    assert answer.status_code == 503, answer.get_json()
    assert "nothing was changed" in answer.get_json()["detail"]
    assert records(app) == 0 and stored(app, "MedicationAdministration") == [] and stored(app, "Provenance") == []
    assert [e["id"] for e in events(app)][:1] == [taken["id"]]  # not a second event under its id
    assert len(events(app)) == 2 and events(app)[1]["outcomeDesc"] == "HTTP 503"  # the refusal, audited after


@contextmanager
def refusing(app: Flask, trigger: str) -> Iterator[None]:
    """Inside, PostgreSQL's `trigger` (CREATE's words up to its table and timing) raises a serialization failure."""
    engine = app.extensions["kfhir"].engine
    table = trigger.split(" ON ")[1].split()[0]
    with engine.begin() as c:
        c.execute(text("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       "RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$"))
        c.execute(text(f"CREATE {trigger} FOR EACH ROW EXECUTE FUNCTION refuse()"))
    try:
        yield
    finally:
        with engine.begin() as c:
            c.execute(text(f"DROP TRIGGER refuse ON {table}"))
            c.execute(text("DROP FUNCTION refuse()"))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_commit_that_fails_after_the_event_was_written_is_not_called_the_audit_s_refusal(
        app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    """The event's INSERT and the COMMIT go in one round trip on PostgreSQL: when the INSERT went through and the
    COMMIT then failed (here a deferred trigger raising a serialization failure), the answer is the database's
    failure (503, try again), not "the audit trail could not record this change"; nothing is stored."""
    with refusing(app, "CONSTRAINT TRIGGER refuse AFTER INSERT ON fhir_resources DEFERRABLE INITIALLY DEFERRED"):
        answer = client.post("/fhir/Patient", data=json.dumps(PATIENT_BODY), content_type=FHIR)
    assert answer.status_code == 503, answer.get_json()
    assert answer.headers["Retry-After"] == "1"
    said = json.dumps(answer.get_json())
    assert "database" in said and "audit" not in said
    assert not [r for r in caplog.records if "AuditEvent" in r.getMessage()]
    assert stored(app, "Patient") == [] and stored(app, "Provenance") == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_record_whose_outbox_jobs_fail_at_the_commit_is_not_called_the_audit_s_refusal(
        app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    """A record's outbox jobs (store/postgres.QUEUE_SQL) go with its COMMIT, before its audit event: when their
    statement fails there (here a trigger raising a serialization failure), the answer is the database's failure (503,
    try again), not the audit's; neither the record, its resources nor a job is stored."""
    from service.exchange.endpoints import Endpoint

    app.extensions["kfhir"].endpoints.add(Endpoint("ehr", "http://ehr.example/fhir", {}), by="test")
    with refusing(app, "TRIGGER refuse BEFORE INSERT ON outbox_jobs"):
        answer = client.post("/api/v1/administrations", json=administration())
    assert answer.status_code == 503, answer.get_json()
    said = json.dumps(answer.get_json())
    assert "database" in said and "audit" not in said
    assert not [r for r in caplog.records if "AuditEvent" in r.getMessage()]
    assert records(app) == 0 and stored(app, "MedicationAdministration") == []
    with app.extensions["kfhir"].engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM outbox_jobs")).scalar_one() == 0


def test_an_event_written_in_a_write_holds_what_core_s_insert_writes(app: Flask) -> None:
    """record_in sends its INSERT on SQLite's own cursor (store/driver.insert): each column holds Core's text."""
    from sqlalchemy import text

    from service.security.audit import Access, Entity
    from service.security.grouped import ADD_EVENT
    from service.store.engine import session

    log: AuditLog = app.extensions["kfhir_security"].audit
    engine = app.extensions["kfhir"].engine
    access = Access(interaction="create", status=201, client_id="c-é", issuer="i", source_address="127.0.0.1",
                    server="http://x/fhir", entities=[Entity("Patient", "p-1")], patients=[("s", "v")])
    with session(engine, write=True) as current:
        content = log.record_in(current, access)
        table = ADD_EVENT.table
        row = dict(current.connection().execute(select(table).where(table.c.id == content["id"])).mappings().one())
    row = {k: v for k, v in row.items() if k != "pk"} | {"id": "core"}
    with engine.begin() as connection:  # the same row through Core's statement, under another id
        connection.execute(ADD_EVENT, row)
        found = {i: rest for i, *rest in connection.execute(text(
            "SELECT id, CAST(recorded AS TEXT), action, outcome, agent, entity_types, patients, CAST(content AS TEXT) "
            "FROM audit_events"))}
    assert found[content["id"]] == found["core"]
    assert found["core"][-1] == json.dumps(content)  # the text json.dumps makes, as the JSON type's


def test_an_event_made_before_its_write_s_unit_is_the_one_made_in_it(app: Flask, monkeypatch: pytest.MonkeyPatch
                                                                       ) -> None:
    """AuditLog.ahead makes a change's event before its unit of work but for its id and time, which record_ahead
    fills in (SQLite, whose writers wait for each unit): every column holds what record_in writes of the same access
    at the same moment under the same id. A text holding the stand-ins elsewhere is not made ahead."""
    from datetime import datetime

    from service.security import audit
    from service.security.audit import Access, Entity
    from service.store.engine import session

    log: AuditLog = app.extensions["kfhir_security"].audit
    engine = app.extensions["kfhir"].engine
    access = Access(interaction="create", status=201, client_id="c-é", issuer="i", source_address="127.0.0.1",
                    server="http://x/fhir", entities=[Entity("administration", "r-1", record=True)],
                    patients=[("s", "v")], patient_refs=["Patient/p-1"])
    made = log.ahead(access)
    if engine.dialect.name != "sqlite":  # sent with the COMMIT there: nothing to make ahead
        assert made is None
        return
    assert made is not None
    at, fresh = datetime(2026, 12, 6, 13, 5, 7, 123456), audit.new_id
    monkeypatch.setattr(audit, "utcnow", lambda: at)
    for event_id in ("in-unit", "ahead"):
        monkeypatch.setattr(audit, "new_id", lambda e=event_id: e)
        with session(engine, write=True) as current:
            if event_id == "ahead":
                assert log.record_ahead(current, made)
            else:
                log.record_in(current, access)
    with engine.connect() as connection:
        found = {i: rest for i, *rest in connection.execute(text(
            "SELECT id, CAST(recorded AS TEXT), action, outcome, agent, entity_types, patients, CAST(content AS TEXT) "
            "FROM audit_events"))}
    assert found["ahead"][:-1] == found["in-unit"][:-1]
    assert found["ahead"][-1] == found["in-unit"][-1].replace('"in-unit"', '"ahead"')
    assert '"recorded": "2026-12-06T13:05:07.123Z"' in found["ahead"][-1]
    monkeypatch.setattr(audit, "new_id", fresh)
    assert log.ahead(Access(interaction="create", status=201, client_id="0001-01-01T00:00:00.000Z", issuer="i",
                            source_address=None, server="s")) is None


def test_a_create_s_event_names_its_patient_as_its_unit_finds_it(app: Flask, client: FlaskClient,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A create's event is made before its unit (auth._audit_ahead) with its patients' identifiers read then; when
    one has changed by the unit, the event names the patient by the identifier the unit reads."""
    from service.store.resources import ResourceStore
    from service.web import auth

    pid = client.post("/fhir/Patient", data=json.dumps(PATIENT_BODY), content_type=FHIR).get_json()["id"]
    new_mrn = {"system": MRN["system"], "value": "MRN-IN-WRITE-2"}
    made_ahead = auth._audit_ahead

    def then_changed(*args: Any) -> None:
        made_ahead(*args)  # the patient changes between the event made ahead and the write's unit
        with ResourceStore(app.extensions["kfhir"].engine).unit(write=True) as unit:
            unit.write("Patient", pid, {**PATIENT_BODY, "id": pid, "identifier": [new_mrn]}, [], "PUT")

    monkeypatch.setattr(auth, "_audit_ahead", then_changed)
    condition = {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"}, "code": {"text": "Asthma"}}
    assert client.post("/fhir/Condition", data=json.dumps(condition), content_type=FHIR).status_code == 201
    created = events(app)[-1]
    log: AuditLog = app.extensions["kfhir_security"].audit
    hashes = [e["what"]["identifier"]["value"] for e in created["entity"] if "identifier" in e["what"]]
    assert hashes == [log.patient_hash(new_mrn["system"], new_mrn["value"])]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_record_sent_again_after_its_commit_failed_commits_its_event(app: Flask, client: FlaskClient,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A record's resources go with its COMMIT on PostgreSQL (store/pipeline.py), after its event: a concurrent write
    that fails them there rolls the event back too, and the record sent again (Contention) writes its event anew."""
    from support.races import race_records_resource

    raced = race_records_resource(app.extensions["kfhir"], monkeypatch)
    made = client.post("/api/v1/administrations", json=administration())
    assert made.status_code == 201 and raced, made.get_json()
    [created] = events(app)
    assert made.get_json()["id"] in [e["what"].get("identifier", {}).get("value") for e in created["entity"]]


FHIR_PATIENT = {"resourceType": "Patient", "identifier": [{"system": "https://clinic.example/mrn", "value": "R-1"}]}


def _next_event_id_taken(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next event id the audit makes is the newest stored one: the database refuses the row (its unique key)."""

    from service.security import audit

    ids, fresh = iter([events(app)[0]["id"]]), audit.new_id
    monkeypatch.setattr(audit, "new_id", lambda: next(ids, None) or fresh())


def test_a_fhir_create_whose_event_the_database_refuses_is_refused_whole(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Patient's event is never made ahead (it names itself): its row goes in the unit, on SQLite at once. Its
    refusal is the audit's 503, not a concurrent writer's conflict (once let out unconverted: a 500)."""
    from service.security.audit import Access

    log: AuditLog = app.extensions["kfhir_security"].audit
    log.record(Access(interaction="read", status=200, client_id="c", issuer="i", source_address=None, server="s"))
    _next_event_id_taken(app, monkeypatch)
    answer = client.post("/fhir/Patient", data=json.dumps(FHIR_PATIENT), content_type=FHIR)
    assert answer.status_code == 503, answer.get_json()
    assert stored(app, "Patient") == []


def test_a_record_update_whose_event_the_database_refuses_is_refused_whole(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    made = client.post("/api/v1/administrations", json=administration())
    assert made.status_code == 201, made.get_json()
    _next_event_id_taken(app, monkeypatch)
    answer = client.put(f"/api/v1/administrations/{made.get_json()['id']}", json=administration(dose_mg=40),
                        headers={"If-Match": 'W/"1"'})
    assert answer.status_code == 503, answer.get_json()
    kept = client.get(f"/api/v1/administrations/{made.get_json()['id']}").get_json()
    assert kept["version"] == 1 and kept["record"]["dose_mg"] == 35


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("scopes", [("system/Observation.cru", "system/Patient.r"), ("system/Observation.cru",)])
def test_a_write_whose_rows_the_database_refuses_is_the_database_s_503_with_or_without_a_patient_lookup(
        app: Flask, client: FlaskClient, api_key: Any, scopes: tuple[str, ...]) -> None:
    """On PostgreSQL a write's last rows go with its next statement: the COMMIT, or (a client that may not read
    Patients) the audit's patient lookup. Failing there, they are the write's failure, not the audit's."""
    assert client.put("/fhir/Patient/seen", json=FHIR_PATIENT | {"id": "seen"}, headers={"Content-Type": FHIR}
                      ).status_code == 201
    body = {"resourceType": "Observation", "id": "pulse", "status": "final", "code": {"text": "Heart rate"},
            "subject": {"reference": "Patient/seen"}, "valueQuantity": {"value": 60}}
    with refusing(app, "TRIGGER refuse BEFORE INSERT ON fhir_resources"):
        answer = client.put("/fhir/Observation/pulse", data=json.dumps(body),
                            headers={"Content-Type": FHIR, "Authorization": f"Bearer {api_key(*scopes)}"})
    assert answer.status_code == 503, answer.get_json()
    assert "audit" not in json.dumps(answer.get_json())
    assert stored(app, "Observation") == []
