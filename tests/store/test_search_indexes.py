"""The search index's date and link indexes are partial (0012, 0014): each holds only the rows it is read for (the
link index those with a path), and the lookups that read them still do."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text

from service.app.runtime import Runtime
from service.search.query import parse

pytestmark = pytest.mark.both_backends

OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "heart rate"},
               "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-03-05T09:00:00Z"}


def test_the_date_and_link_indexes_hold_their_own_rows_only(runtime: Runtime) -> None:
    with runtime.resources.unit(write=True) as unit:
        unit.write("Observation", "o1", OBSERVATION, [], "PUT")
    with runtime.engine.connect() as conn:
        if runtime.engine.dialect.name != "sqlite":
            for name in ("ix_fhir_search_links", "ix_fhir_search_dates"):
                definition = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name})
                assert " WHERE " in str(definition.scalar())
            return
        rows = conn.execute(text("SELECT count(*), sum(path IS NOT NULL), sum(low IS NOT NULL) FROM fhir_search_index"))
        total, links, dates = rows.one()
        entries = dict(conn.execute(text("SELECT name, sum(ncell) FROM dbstat WHERE name IN "
                                         "('ix_fhir_search_links', 'ix_fhir_search_dates') AND pagetype = 'leaf' "
                                         "GROUP BY name")).all())
    assert (links, dates, total) == (1, 1, 3)  # and status (a code as text is not a token); subject is the link
    assert entries == {"ix_fhir_search_links": links, "ix_fhir_search_dates": dates}


def test_referrers_and_date_searches_are_answered_through_the_partial_indexes(runtime: Runtime) -> None:
    with runtime.resources.unit(write=True) as unit:
        unit.write("Observation", "o1", OBSERVATION, [], "PUT")
        unit.write("Observation", "o2", {**OBSERVATION, "effectiveDateTime": "2026-04-01T09:00:00Z"}, [], "PUT")
    sent: list[tuple[str, Any]] = []
    def note(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        sent.append((statement, params))

    event.listen(runtime.engine, "before_cursor_execute", note)
    with runtime.resources.unit() as unit:
        assert unit.referrers(["Patient/p1"]) == [("Observation/o1", "Observation.subject", "Patient/p1"),
                                                  ("Observation/o2", "Observation.subject", "Patient/p1")]
        found, _ = unit.search(parse("Observation", [("date", "lt2026-03-10")]))
        assert [r.id for r in found] == ["o1"]
        found, _ = unit.search(parse("Observation", [("date", "2026-04-01")]))
        assert [r.id for r in found] == ["o2"]
    event.remove(runtime.engine, "before_cursor_execute", note)
    if runtime.engine.dialect.name != "sqlite":
        return  # PostgreSQL's choice of plan depends on its statistics; its answers are checked above
    with runtime.engine.connect() as conn:
        plans = [" ".join(str(row[3]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params))
                 for statement, params in sent if "fhir_search_index" in statement]
    assert any("ix_fhir_search_links" in plan for plan in plans), plans
    assert sum("ix_fhir_search_dates" in plan for plan in plans) == 2, plans
