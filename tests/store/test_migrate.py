"""Migrations: idempotent, at head, and in step with the models."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from support.databases import fresh_database

from service.app.runtime import Runtime
from service.store.engine import make_engine
from service.store.migrate import compared, current_revision, downgrade, head_revision, upgrade
from service.store.models import Base
from service.store.resources import ResourceStore

pytestmark = pytest.mark.both_backends  # migrations


def test_upgrade_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh' / 'db.sqlite'}")
    assert current_revision(engine) is None
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0019"


def test_0008_indexes_the_references_resources_already_held(tmp_path: Path) -> None:
    """A database indexed before reference links were: its resources' referrers are found after the upgrade."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine, "0007")
    observation = {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"},
                   "performer": [{"reference": "https://elsewhere.example/fhir/Practitioner/x"}]}
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO fhir_resources (resource_type, id, version, deleted, last_updated, content, "
                             "warnings) VALUES ('Observation', 'o1', 1, 0, '2026-12-05 00:00:00', :c, '[]')"),
                     {"c": json.dumps(observation)})
    upgrade(engine)
    with ResourceStore(engine).unit() as unit:
        assert unit.referrers(["Patient/p1"]) == [("Observation/o1", "Observation.subject", "Patient/p1")]
        assert unit.referrers(["Practitioner/x"]) == []  # an absolute URL points at another server


def test_migrations_match_the_models(runtime: Runtime) -> None:
    with runtime.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_object": compared(conn.dialect.name)}),
                                Base.metadata)
    assert diff == []


def _index_keys(engine: sa.Engine) -> list[tuple[str, list[str]]]:
    return [(key["referred_table"], key["constrained_columns"])
            for key in sa.inspect(engine).get_foreign_keys("fhir_search_index")]


def test_0015_drops_the_index_rows_foreign_key_on_postgresql_only_in_place(runtime: Runtime, tmp_path: Path) -> None:
    """A database at 0014 holding resources: upgraded, its index rows are the same and still found; PostgreSQL no
    longer checks their key (a row naming no resource is taken), SQLite still does; the downgrade checks it again."""
    backend = runtime.engine.dialect.name
    url = runtime.engine.url.render_as_string(hide_password=False) if backend == "postgresql" else None
    with fresh_database(backend, url, tmp_path) as fresh:
        engine = make_engine(fresh)
        try:
            upgrade(engine, "0014")
            with ResourceStore(engine).unit(write=True) as unit:
                unit.write("Observation", "o1", {"resourceType": "Observation", "status": "final",
                                                 "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}},
                           [], "PUT")
            read = "SELECT resource_pk, resource_type, param, system, value, low, high, path FROM fhir_search_index"
            with engine.connect() as conn:
                before = conn.execute(sa.text(read + " ORDER BY pk")).all()
            assert before and _index_keys(engine) == [("fhir_resources", ["resource_pk"])]

            upgrade(engine)
            with engine.connect() as conn:
                assert conn.execute(sa.text(read + " ORDER BY pk")).all() == before
            with ResourceStore(engine).unit() as unit:
                assert unit.referrers(["Patient/p1"]) == [("Observation/o1", "Observation.subject", "Patient/p1")]
            orphan = ("INSERT INTO fhir_search_index (resource_pk, resource_type, param, value) "
                      "VALUES (999999, 'Observation', 'code', 'x')")
            if backend == "postgresql":
                assert _index_keys(engine) == []
                with engine.begin() as conn:
                    conn.execute(sa.text(orphan))
                    conn.execute(sa.text("DELETE FROM fhir_search_index WHERE resource_pk = 999999"))
            else:
                assert _index_keys(engine) == [("fhir_resources", ["resource_pk"])]
                with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
                    conn.execute(sa.text(orphan))

            downgrade(engine, "0014")
            assert _index_keys(engine) == [("fhir_resources", ["resource_pk"])]
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
                conn.execute(sa.text(orphan))
        finally:
            engine.dispose()


@contextmanager
def _fresh_engine(runtime: Runtime, tmp_path: Path, revision: str) -> Iterator[sa.Engine]:
    """An engine on a new database of the runtime's backend, at `revision`; disposed of at the end."""
    backend = runtime.engine.dialect.name
    url = runtime.engine.url.render_as_string(hide_password=False) if backend == "postgresql" else None
    with fresh_database(backend, url, tmp_path) as fresh:
        engine = make_engine(fresh)
        try:
            upgrade(engine, revision)
            yield engine
        finally:
            engine.dispose()


def _index_layout(engine: sa.Engine) -> tuple[list[str], dict[str, list[str]]]:
    """The search index's primary key columns and its indexes' columns by name."""
    found = sa.inspect(engine)
    return (found.get_pk_constraint("fhir_search_index")["constrained_columns"],
            {index["name"]: index["column_names"] for index in found.get_indexes("fhir_search_index")})


BEFORE_0016 = {"ix_fhir_search_keys": ["resource_type", "param", "value", "resource_pk"],
               "ix_fhir_search_dates": ["resource_type", "param", "low", "high"],
               "ix_fhir_search_resource": ["resource_pk"], "ix_fhir_search_links": ["value"]}


def test_0016_keys_the_index_rows_by_resource_on_postgresql_and_orders_the_links_in_place(runtime: Runtime,
                                                                                          tmp_path: Path) -> None:
    """A database at 0015 holding resources: upgraded, PostgreSQL's search index is keyed (resource_pk, pk), without
    ix_fhir_search_resource (SQLite's as it was), and the links index is (value, pk) on both; the rows are the same and
    still found, a changed resource's replaced, referrers found in key order; a second row of the same key is refused;
    the downgrade brings the indexes and key back."""
    backend = runtime.engine.dialect.name
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "Patient/p1"}}
    read = "SELECT pk, resource_pk, resource_type, param, system, value, low, high, path FROM fhir_search_index"
    with _fresh_engine(runtime, tmp_path, "0015") as engine:
        with ResourceStore(engine).unit(write=True) as unit:
            for n in (1, 2, 3):
                unit.write("Observation", f"o{n}", observation, [], "PUT")
        with engine.connect() as conn:
            before = conn.execute(sa.text(read + " ORDER BY pk")).all()
        assert len({row.resource_pk for row in before}) == 3 and _index_layout(engine) == (["pk"], BEFORE_0016)

        upgrade(engine)
        if backend == "postgresql":
            kept = {name: columns for name, columns in BEFORE_0016.items() if name != "ix_fhir_search_resource"}
            assert _index_layout(engine) == (["resource_pk", "pk"], kept | {"ix_fhir_search_links": ["value", "pk"]})
        else:
            assert _index_layout(engine) == (["pk"], BEFORE_0016 | {"ix_fhir_search_links": ["value", "pk"]})
        with engine.connect() as conn:
            assert conn.execute(sa.text(read + " ORDER BY pk")).all() == before
        with ResourceStore(engine).unit(write=True) as unit:  # o1 now refers to p2: its rows dropped by key
            unit.write("Observation", "o1", observation | {"subject": {"reference": "Patient/p2"}}, [], "PUT")
        with ResourceStore(engine).unit() as unit:
            assert unit.referrers(["Patient/p1"]) == [("Observation/o2", "Observation.subject", "Patient/p1"),
                                                      ("Observation/o3", "Observation.subject", "Patient/p1")]
            assert unit.referrers(["Patient/p1"], limit=1) == [
                ("Observation/o2", "Observation.subject", "Patient/p1")]
            assert unit.referrers(["Patient/p2"]) == [("Observation/o1", "Observation.subject", "Patient/p2")]
        with engine.connect() as conn:
            first = conn.execute(sa.text(read + " ORDER BY pk LIMIT 1")).one()
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # still the key it was
            conn.execute(sa.text("INSERT INTO fhir_search_index (pk, resource_pk, resource_type, param) "
                                 "VALUES (:pk, :resource_pk, 'Observation', 'code')"),
                         {"pk": first.pk, "resource_pk": first.resource_pk})

        downgrade(engine, "0015")
        assert _index_layout(engine) == (["pk"], BEFORE_0016)
        with ResourceStore(engine).unit() as unit:
            assert unit.referrers(["Patient/p2"]) == [("Observation/o1", "Observation.subject", "Patient/p2")]


def test_0017_compresses_new_documents_with_lz4_on_postgresql_and_reads_every_one_back(runtime: Runtime,
                                                                                       tmp_path: Path) -> None:
    """A database at 0016 holding a resource large enough to be compressed (pglz): upgraded, a resource written then
    is compressed with lz4 on PostgreSQL, the one before keeps pglz, and both read back as written; the downgrade
    compresses new ones as the server's default again. SQLite: nothing changes, both read back."""
    backend = runtime.engine.dialect.name
    note = " ".join(f"reading {n} of the infusion monitoring" for n in range(200))  # ~7 KB: compressed
    content = {"resourceType": "Observation", "status": "final", "code": {"text": note}}
    method = "SELECT pg_column_compression(content) FROM fhir_resources WHERE id = :id"
    with _fresh_engine(runtime, tmp_path, "0016") as engine:
        with ResourceStore(engine).unit(write=True) as unit:
            unit.write("Observation", "before", content, [], "PUT")
        upgrade(engine)
        with ResourceStore(engine).unit(write=True) as unit:
            unit.write("Observation", "after", content, [], "PUT")
        with ResourceStore(engine).unit() as unit:
            for name in ("before", "after"):
                stored = unit.read("Observation", name)
                assert stored is not None and stored.content is not None
                assert stored.content["code"] == content["code"]
        if backend == "postgresql":
            with engine.connect() as conn:
                assert [conn.execute(sa.text(method), {"id": name}).scalar() for name in ("before", "after")] == [
                    "pglz", "lz4"]
            downgrade(engine, "0016")
            with ResourceStore(engine).unit(write=True) as unit:
                unit.write("Observation", "again", content, [], "PUT")
            with engine.connect() as conn:
                assert conn.execute(sa.text(method), {"id": "again"}).scalar() == "pglz"


def test_0018_rewrites_the_outbox_keys_of_sources_holding_a_slash_and_queues_again_the_jobs_a_clash_lost(
        runtime: Runtime, tmp_path: Path) -> None:
    """A database at 0017 whose outbox holds jobs keyed in the plain form, one of them lost to a clash (superseded by
    the job of another record of the same plain key): upgraded, the jobs of a record whose source holds a "/" are keyed
    `kind//length/source/id` (exchange/outbox.business_key), the others as they were, and the lost job is queued again,
    while a job superseded by its own record's newer version stays done; the downgrade writes the plain form back."""
    records = {"r1": ("assessment", "clinic/x", "1"), "r2": ("assessment", "clinic", "x/1"),
               "r3": ("treatment-plan", "clinic-a", "plan-1")}
    jobs = [(1, "r1", 1, "done", 2), (2, "r2", 1, "queued", None),  # r1's only job lost to r2's
            (3, "r3", 1, "done", 4), (4, "r3", 2, "queued", None)]  # r3's first version superseded by its second
    at = "2026-03-02 09:00:00"
    with _fresh_engine(runtime, tmp_path, "0017") as engine:
        with engine.begin() as conn:
            for record_id, (kind, source, external_id) in records.items():
                conn.execute(sa.text(
                    "INSERT INTO records (id, kind, source, external_id, patient_system, patient_value, version, content, "
                    "content_hash, warnings, created_at, updated_at) VALUES (:id, :kind, :source, :ext, 'urn:x', "
                    "'p', 1, '{}', 'h', '[]', :at, :at)"),
                    {"id": record_id, "kind": kind, "source": source, "ext": external_id, "at": at})
            for pk, record_id, version, state, superseded_by in jobs:
                kind, source, external_id = records[record_id]
                conn.execute(sa.text(
                    "INSERT INTO outbox_jobs (pk, endpoint, record_id, record_kind, record_version, business_key, "
                    "state, attempts, next_attempt_at, payload, created_at, updated_at, superseded_by, finished_at) "
                    "VALUES (:pk, 'ehr', :id, :kind, :version, :key, :state, 0, :at, '{}', :at, :at, :by, :done)"),
                    {"pk": pk, "id": record_id, "kind": kind, "version": version, "state": state, "at": at,
                     "key": f"{kind}/{source}/{external_id}", "by": superseded_by,
                     "done": at if state == "done" else None})
        read = "SELECT business_key, state, superseded_by FROM outbox_jobs ORDER BY pk"
        plain = ["assessment/clinic/x/1", "assessment/clinic/x/1", "treatment-plan/clinic-a/plan-1",
                 "treatment-plan/clinic-a/plan-1"]

        upgrade(engine)
        with engine.connect() as conn:
            assert [tuple(row) for row in conn.execute(sa.text(read))] == [
                ("assessment//8/clinic/x/1", "queued", None), ("assessment/clinic/x/1", "queued", None),
                ("treatment-plan/clinic-a/plan-1", "done", 4), ("treatment-plan/clinic-a/plan-1", "queued", None)]

        downgrade(engine, "0017")
        with engine.connect() as conn:
            assert [row.business_key for row in conn.execute(sa.text(read))] == plain


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
