"""The record store: one copy per identity even under races, versions kept, filters and pages."""
from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from factories import assessment
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.app.runtime import Runtime
from service.domain.intake import content_hash
from service.store import records as records_module
from service.store.engine import session
from service.store.models import RecordRow, RecordVersionRow
from service.store.records import ListQuery, NewRecord, StaleVersion, utcnow

pytestmark = pytest.mark.both_backends  # the store: identity constraints, savepoints, concurrent writers, JSON and time columns


def new(external_id: str = "a-1", patient: str = "MRN-1", at: datetime | None = None,
        content: dict[str, Any] | None = None, source: str = "clinic-a") -> NewRecord:
    body = content or {"external_id": external_id, "score": 1}
    return NewRecord("assessment", source, external_id, "https://clinic.example/mrn", patient,
                     at or datetime(2026, 3, 2, 14), body, content_hash(body), [])


def counts(rt: Runtime) -> tuple[int, int]:
    with Session(rt.engine) as s:
        return (s.scalar(select(func.count()).select_from(RecordRow)) or 0,
                s.scalar(select(func.count()).select_from(RecordVersionRow)) or 0)


def test_create_then_same_identity_returns_the_stored_record(runtime: Runtime) -> None:
    first, created = runtime.store.create(new())
    again, created_again = runtime.store.create(new(content={"external_id": "a-1", "score": 2}))
    assert (created, created_again) == (True, False)
    assert again.id == first.id and again.content == {"external_id": "a-1", "score": 1}
    assert counts(runtime) == (1, 1)


def test_same_external_id_from_another_source_is_another_record(runtime: Runtime) -> None:
    runtime.store.create(new())
    _, created = runtime.store.create(new(source="clinic-b"))
    assert created and counts(runtime) == (2, 2)


def test_concurrent_identical_creates_store_exactly_one(runtime: Runtime) -> None:
    barrier, results, errors = threading.Barrier(8), [], []

    def create() -> None:
        try:
            barrier.wait()
            results.append(runtime.store.create(new("race-1")))
        except Exception as exc:  # noqa: BLE001 - any failure is the test's finding
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    assert len({record.id for record, _ in results}) == 1
    assert counts(runtime) == (1, 1)


def test_update_keeps_every_version(runtime: Runtime) -> None:
    record, _ = runtime.store.create(new())
    updated = runtime.store.update(record.id, 1, new(content={"external_id": "a-1", "score": 5}))
    assert updated.version == 2 and updated.content["score"] == 5
    history = runtime.store.versions(updated)
    assert [(v["version"], v["content"]["score"]) for v in history] == [(1, 1), (2, 5)]


def test_update_from_a_stale_version_changes_nothing(runtime: Runtime) -> None:
    record, _ = runtime.store.create(new())
    runtime.store.update(record.id, 1, new(content={"external_id": "a-1", "score": 5}))
    with pytest.raises(StaleVersion) as info:
        runtime.store.update(record.id, 1, new(content={"external_id": "a-1", "score": 9}))
    assert info.value.current.version == 2
    assert runtime.store.get("assessment", record.id).content["score"] == 5  # type: ignore[union-attr]
    assert counts(runtime) == (1, 2)


def test_concurrent_updates_from_one_version_let_exactly_one_win(runtime: Runtime) -> None:
    record, _ = runtime.store.create(new())
    barrier, outcomes = threading.Barrier(6), []

    def update(score: int) -> None:
        barrier.wait()
        try:
            runtime.store.update(record.id, 1, new(content={"external_id": "a-1", "score": score}))
            outcomes.append("won")
        except StaleVersion:
            outcomes.append("stale")

    threads = [threading.Thread(target=update, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["stale"] * 5 + ["won"]
    assert counts(runtime) == (1, 2)


def test_a_crash_between_record_and_version_rows_writes_neither(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: Any) -> None:  # after the record's INSERT, before its version's
        raise RuntimeError("process died here")

    monkeypatch.setattr(records_module, "StoredRecord", explode)
    with pytest.raises(RuntimeError):
        runtime.store.create(new())
    assert counts(runtime) == (0, 0)


def test_a_create_in_a_caller_s_transaction_finds_a_held_identity_and_keeps_the_rest(runtime: Runtime) -> None:
    """Bound to a caller's transaction with nothing to write within it (a record read from a FHIR resource; SQLite
    without a savepoint): an identity already held gives the stored record, its failed INSERT leaves nothing behind,
    and what the transaction wrote before and after commits."""
    first, _ = runtime.store.create(new())
    with session(runtime.engine, write=True) as outer:
        bound = runtime.store.bound(outer)
        made, created = bound.create(new("a-2"))
        again, created_again = bound.create(new(content={"external_id": "a-1", "score": 2}))
        after, created_after = bound.create(new("a-3"))
    assert (created, created_again, created_after) == (True, False, True)
    assert again == first
    assert counts(runtime) == (3, 3)
    assert runtime.store.get("assessment", made.id) == made and runtime.store.get("assessment", after.id) == after


def test_a_crash_in_a_caller_s_transaction_rolls_the_whole_transaction_back(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: Any) -> None:  # after the record's INSERT, before its version's
        raise RuntimeError("process died here")

    with pytest.raises(RuntimeError), session(runtime.engine, write=True) as outer:
        bound = runtime.store.bound(outer)
        bound.create(new("a-2"))
        monkeypatch.setattr(records_module, "StoredRecord", explode)
        bound.create(new("a-3"))
    assert counts(runtime) == (0, 0)


def test_get_and_find(runtime: Runtime) -> None:
    record, _ = runtime.store.create(new())
    assert runtime.store.get("assessment", record.id) == record
    assert runtime.store.get("administration", record.id) is None
    assert runtime.store.find("assessment", "clinic-a", "a-1") == record
    assert runtime.store.find("assessment", "clinic-b", "a-1") is None


def test_a_lookup_by_key_reads_on_the_drivers_cursor_what_core_reads(runtime: Runtime) -> None:
    """find() and get() read on SQLite's own cursor (driver.select): every column's value as Core's row gives it."""
    content = {"external_id": "a-1", "name": "Zoë 名", "nested": {"list": [1, 2.5, None, True]}}
    record, _ = runtime.store.create(new(content=content, at=datetime(2026, 3, 2, 14, 5, 6, 789)))
    params = {"kind": "assessment", "source": "clinic-a", "external_id": "a-1"}
    with runtime.engine.connect() as connection:
        fast = records_module._one_row(connection, records_module.FIND_RECORD, params)
        core = connection.execute(records_module.FIND_RECORD, params).one()
        assert records_module._one_row(connection, records_module.FIND_RECORD, params | {"source": "b"}) is None
    assert fast._asdict() == core._asdict()
    assert [type(value) for value in fast] == [type(value) for value in core]
    assert fast.clinical_at == datetime(2026, 3, 2, 14, 5, 6, 789) and fast.content == content
    assert runtime.store.find("assessment", "clinic-a", "a-1") == record


def test_list_filters_by_patient_and_date_and_pages_in_order(runtime: Runtime) -> None:
    for n in range(5):
        runtime.store.create(new(f"a-{n}", patient="MRN-1" if n % 2 == 0 else "MRN-2", at=datetime(2026, 3, 1 + n, 12)))
    ids = lambda q: [r.external_id for r in runtime.store.list(q)]  # noqa: E731
    assert ids(ListQuery("assessment", patient_value="MRN-1")) == ["a-0", "a-2", "a-4"]
    assert ids(ListQuery("assessment", patient_system="https://other", patient_value="MRN-1")) == []
    assert ids(ListQuery("assessment", date_from=datetime(2026, 3, 2), date_to=datetime(2026, 3, 4))) == ["a-1", "a-2"]
    first = runtime.store.list(ListQuery("assessment", limit=2))
    rest = runtime.store.list(ListQuery("assessment", after_pk=first[-1].pk, limit=10))
    assert [r.external_id for r in first + rest] == [f"a-{n}" for n in range(5)]
    assert ids(ListQuery("administration")) == []


def test_content_round_trips_unicode_and_nesting(runtime: Runtime) -> None:
    content = assessment(patient={"identifier": {"system": "s", "value": "v"}, "name": {"family": "Ñoño 患者"}})
    record, _ = runtime.store.create(new(content=content))
    assert runtime.store.get("assessment", record.id).content == content  # type: ignore[union-attr]


def test_a_created_record_s_rows_hold_what_core_s_insert_writes(runtime: Runtime) -> None:
    """RecordStore.create sends its two INSERTs on SQLite's own cursor (store/driver.insert): each column holds the
    text SQLAlchemy's Core would have written (JSON, times with microseconds)."""
    from sqlalchemy import text

    made = new("a-9", content={"external_id": "a-9", "é": ["ü", {"n": 1.5}], "none": None})
    stored, _ = runtime.store.create(made)
    core = records_module.insert(records_module.RECORDS).values(pk=stored.pk + 1000, id="core", external_id="a-core",
                                                                clinical_at=made.clinical_at)  # the JSON type's own
    with runtime.engine.begin() as connection:
        connection.execute(core, {"kind": made.kind, "source": made.source, "patient_system": made.patient_system,
                                  "patient_value": made.patient_value, "version": 1, "content": made.content,
                                  "content_hash": made.content_hash, "warnings": made.warnings,
                                  "created_at": stored.created_at, "updated_at": stored.updated_at})
        connection.execute(records_module.insert(records_module.VERSIONS), {
            "record_pk": stored.pk + 1000, "version": 1, "content": made.content, "content_hash": made.content_hash,
            "warnings": made.warnings, "created_at": stored.created_at})
        rows = connection.execute(text(
            "SELECT id, CAST(content AS TEXT), CAST(warnings AS TEXT), CAST(created_at AS TEXT), CAST(updated_at AS TEXT), "
            "CAST(clinical_at AS TEXT) FROM records WHERE id IN ('core', :id) ORDER BY id"), {"id": stored.id}).all()
        versions = connection.execute(text(
            "SELECT CAST(content AS TEXT), CAST(warnings AS TEXT), CAST(created_at AS TEXT) FROM record_versions "
            "WHERE record_pk IN (:a, :b) ORDER BY record_pk"), {"a": stored.pk, "b": stored.pk + 1000}).all()
    (core_row, driver_row) = rows if rows[0][0] == "core" else rows[::-1]
    assert driver_row[1:] == core_row[1:] and driver_row[5] is not None
    assert versions[0] == versions[1]
    assert runtime.store.get("assessment", stored.id) == stored


def test_utcnow_is_the_moment_in_utc_without_tzinfo() -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    now = utcnow()
    after = datetime.now(UTC).replace(tzinfo=None)
    assert type(now) is datetime and now.tzinfo is None and before <= now <= after
