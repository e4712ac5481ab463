"""`ketamine-fhir seed-demo` and the usage errors of `ketamine-fhir import` (its reports: tests/test_importer.py)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from cli.support import kfhir
from sqlalchemy import text

from service.demo import demo_records
from service.store.engine import make_engine


def record_counts(database_url: str) -> Counter[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return Counter(dict(conn.execute(text("SELECT kind, count(*) FROM records GROUP BY kind")).all()))
    finally:
        engine.dispose()


def test_seed_demo_loads_every_demo_record_once_and_a_second_run_creates_none(
        database_url: str, tmp_path: Path) -> None:
    expected = Counter(kind for kind, _ in demo_records())

    first = kfhir("seed-demo", database_url=database_url, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert f"{sum(expected.values())} records created, 0 already present" in first.stdout
    assert record_counts(database_url) == expected

    second = kfhir("seed-demo", database_url=database_url, cwd=tmp_path)

    assert second.returncode == 0, second.stderr
    assert f"0 records created, {sum(expected.values())} already present" in second.stdout
    assert record_counts(database_url) == expected


def test_import_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = kfhir("import", tmp_path / "absent.jsonl", "--kind", "assessment",
                   database_url=f"sqlite:///{tmp_path / 'kfhir.db'}", cwd=tmp_path)

    assert result.returncode == 2
    assert "absent.jsonl" in result.stderr
