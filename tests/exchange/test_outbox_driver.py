"""On SQLite a record's outbox jobs are inserted, and the queued jobs of its older versions superseded, on the
driver's own cursor (outbox.queue: each Core statement cost ~150 µs more, inside the write unit every other writer
waits for); the rows are those Core writes, their times bound as the columns' type binds them."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from exchange.conftest import ENDPOINTS, endpoints_file
from factories import assessment
from sqlalchemy import text
from support.databases import copy_sqlite

from service.app.runtime import Runtime
from service.config import Settings
from service.exchange import outbox
from service.store import driver

RANDOM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?")


def shape(moment: re.Match[str]) -> str:
    """A stored time's form (its digits masked): the same text, but for when it was written."""
    return re.sub(r"\d", "9", moment.group(0))


@pytest.fixture
def runtime(sqlite_template: Path, tmp_path: Path) -> Iterator[Runtime]:
    copy_sqlite(sqlite_template, tmp_path / "kfhir.db")
    path = endpoints_file(tmp_path, *ENDPOINTS)
    made = Runtime.build(Settings.load({"database_url": f"sqlite:///{tmp_path / 'kfhir.db'}",
                                        "endpoints_file": str(path)}, environ={}))
    yield made
    made.engine.dispose()


def jobs(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A record and its next version (its queued jobs superseded): every job row as stored, ids and times masked."""
    first = runtime.intake.submit("assessment", assessment()).record
    runtime.intake.replace("assessment", first.id, 1, assessment(score=12))
    with runtime.engine.connect() as c:
        rows = c.execute(text("SELECT * FROM outbox_jobs ORDER BY pk")).all()
    return [TIME.sub(shape, RANDOM_ID.sub("R", "|".join(f"{type(v).__name__}:{v}" for v in row))) for row in rows]


def test_jobs_written_on_the_drivers_cursor_are_the_rows_core_writes(
        runtime: Runtime, sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = jobs(runtime, monkeypatch)
    assert len(mine) == 4 and sum("|str:done|" in row for row in mine) == 2  # each endpoint's version 1 superseded
    (tmp_path / "core").mkdir()
    with monkeypatch.context() as core:  # the outbox's statements through Core
        core.setattr(outbox, "driver", SimpleNamespace(insert=lambda *_: None, placeholder=lambda _: None,
                                                       rows=driver.rows))
        copy_sqlite(sqlite_template, tmp_path / "core" / "kfhir.db")
        other = Runtime.build(runtime.settings.replace(database_url=f"sqlite:///{tmp_path / 'core' / 'kfhir.db'}"))
        try:
            theirs = jobs(other, core)
        finally:
            other.engine.dispose()
    assert mine == theirs


def test_a_created_records_jobs_supersede_nothing_so_no_update_is_sent(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record's first version is created in the transaction that queues it: no older job of its key can be
    queued, so SUPERSEDE is not sent (a statement fewer in the writers' turn); its next version's is."""
    sent: list[str] = []
    rows = driver.rows

    def counted(connection: object, sql: str, params: object) -> object:
        sent.append(sql.split()[0])
        return rows(connection, sql, params)  # type: ignore[arg-type]

    monkeypatch.setattr(outbox.driver, "rows", counted)
    first = runtime.intake.submit("assessment", assessment()).record
    assert "UPDATE" not in sent
    runtime.intake.replace("assessment", first.id, 1, assessment(score=12))
    assert sent.count("UPDATE") == 2  # one for each endpoint's queued version 1
