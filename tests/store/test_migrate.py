"""Migrations: idempotent, at head, and in step with the models."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.app.runtime import Runtime
from service.store.engine import make_engine
from service.store.migrate import current_revision, head_revision, upgrade
from service.store.models import Base
from service.store.resources import ResourceStore

pytestmark = pytest.mark.both_backends  # migrations


def test_upgrade_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh' / 'db.sqlite'}")
    assert current_revision(engine) is None
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0014"


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
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
