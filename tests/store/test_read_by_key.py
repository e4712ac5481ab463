"""ResourceStore.read_by_key: a read ahead's unit on a Core connection, its Session made only if asked for."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from service.app.runtime import Runtime
from service.domain.intake import content_hash
from service.search.query import parse
from service.store.engine import reading
from service.store.records import NewRecord

pytestmark = pytest.mark.both_backends


def a_patient(runtime: Runtime, patient_id: str = "p-1") -> None:
    with runtime.resources.unit(write=True) as unit:
        unit.write("Patient", patient_id, {"resourceType": "Patient", "gender": "female"}, [], "PUT")


def test_it_reads_by_key_what_a_keyed_unit_reads_and_begins_no_session(runtime: Runtime) -> None:
    a_patient(runtime)
    made: list[Session] = []

    def begun(session: Session, *_: object) -> None:
        made.append(session)

    event.listen(Session, "after_begin", begun)
    try:
        with runtime.resources.unit(keyed=True) as unit:
            expected = [unit.get("Patient", "p-1"), unit.get("Patient", "nobody")]
        assert len(made) == 1  # seen: a keyed unit's Session begins
        made.clear()
        with runtime.resources.read_by_key() as unit:
            unit.prefetch([("Patient", "p-1"), ("Patient", "nobody")])
            found = [unit.get("Patient", "p-1"), unit.get("Patient", "nobody")]
    finally:
        event.remove(Session, "after_begin", begun)
    assert found == expected and found[0] is not None and found[0].content == {
        "resourceType": "Patient", "id": "p-1", "meta": found[0].content["meta"], "gender": "female"}
    assert made == []  # no ORM transaction begun


def test_a_search_in_it_gets_a_session_on_its_connection_closed_with_it(runtime: Runtime) -> None:
    a_patient(runtime)
    with runtime.resources.read_by_key() as unit:
        page, _ = unit.search(parse("Patient", [("_id", "p-1")]))
        session = unit.session
        assert session.connection() is unit.connection  # the unit's transaction: the same snapshot
    assert [r.id for r in page] == ["p-1"]
    assert not session.in_transaction()  # closed with the unit


def test_inside_a_read_routes_shared_transaction_it_joins_it(runtime: Runtime) -> None:
    a_patient(runtime)
    with reading(runtime.engine) as shared, runtime.resources.read_by_key() as unit:
        assert unit.session is shared
        assert unit.get("Patient", "p-1") is not None


def test_a_record_store_reading_on_its_connection_finds_what_find_finds(runtime: Runtime) -> None:
    body = {"external_id": "a-1", "score": 1}
    record, _ = runtime.store.create(NewRecord("assessment", "clinic-a", "a-1", "https://clinic.example/mrn", "MRN-1",
                                               datetime(2026, 3, 2, 14), body, content_hash(body), []))
    with runtime.resources.read_by_key() as unit:
        store = runtime.store.reading(unit.connection)
        assert store.find("assessment", "clinic-a", "a-1") == record
        assert store.stamp("assessment", "clinic-a", "a-1") == (record.id, 1, record.content_hash)
        assert store.find("assessment", "clinic-a", "a-2") is None
