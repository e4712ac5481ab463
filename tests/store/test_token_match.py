"""A conditional match's `identifier=system|value` runs a statement built once (statements.TOKEN_MATCH); it must find
exactly what the general search finds, for every shape it takes and none it does not."""
from __future__ import annotations

from typing import Any

import pytest

from service.app.runtime import Runtime
from service.search.query import parse
from service.store import statements

MRN, OTHER = "https://clinic.example/mrn", "https://other.example/mrn"


def patient(pid: str, *identifiers: tuple[str, str]) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "identifier": [{"system": s, "value": v} for s, v in identifiers]}


@pytest.fixture
def held(runtime: Runtime) -> Runtime:
    for resource in (patient("a", (MRN, "1")), patient("b", (OTHER, "1")), patient("c", (MRN, "2"), (OTHER, "3")),
                     patient("d", (MRN, "4")), patient("e", (MRN, "4")), patient("gone", (MRN, "5")),
                     patient("twice", (MRN, "6"), (MRN, "6")),
                     {"resourceType": "Practitioner", "id": "p", "identifier": [{"system": MRN, "value": "1"}]}):
        runtime.fhir.update(resource["resourceType"], resource["id"], resource)
    runtime.fhir.delete("Patient", "gone")
    return runtime


FAST = [("Patient", "identifier", f"{MRN}|1"), ("Patient", "identifier", f"{OTHER}|1"),
        ("Patient", "identifier", f"{OTHER}|3"), ("Patient", "identifier", f"{MRN}|3"),
        ("Patient", "identifier", f"{MRN}|4"), ("Patient", "identifier", f"{MRN}|5"),
        ("Practitioner", "identifier", f"{MRN}|1"), ("Patient", "identifier", f"{MRN}|nobody"),
        ("Patient", "identifier", f"{MRN}|6")]
GENERAL = [("Patient", "identifier", "1"), ("Patient", "identifier", "|1"), ("Patient", "identifier", f"{MRN}|"),
           ("Patient", "identifier", f"{MRN}|1,{OTHER}|1"), ("Patient", "identifier:not", f"{MRN}|1"),
           ("Patient", "_id", "a")]


@pytest.mark.both_backends
@pytest.mark.parametrize(("resource_type", "name", "value"), FAST + GENERAL)
def test_the_statement_built_once_finds_what_the_general_search_finds(
        held: Runtime, monkeypatch: pytest.MonkeyPatch, resource_type: str, name: str, value: str) -> None:
    def search(count: int, total: bool | None) -> tuple[list[tuple[str, int]], int | None]:
        query = parse(resource_type, [(name, value)])
        query.total, query.count = total, count
        with held.resources.unit() as unit:
            found, counted = unit.search(query)
            return [(r.id, r.version) for r in found], counted

    query = parse(resource_type, [(name, value)])
    query.total = False
    assert statements.one_token(query) is ((resource_type, name, value) in FAST)
    shapes = [(count, total) for count in (1, 2, 10) for total in (False, None)]  # none, or the last page's
    found = {shape: search(*shape) for shape in shapes}
    monkeypatch.setattr(statements, "one_token", lambda _query: False)
    assert found == {shape: search(*shape) for shape in shapes}


@pytest.mark.both_backends
@pytest.mark.parametrize("count", [1, 2, 10])
def test_what_many_searches_find_is_read_in_one_statement(held: Runtime, count: int) -> None:
    """Unit.found_keys (statements.token_keys): what each search finds on its first page, by id, version and deleted
    (a resource holding the token twice once, at most `count`, in search's order), None for a query that is not
    TOKEN_MATCH's, the TOKEN_MATCH ones' read in one statement."""
    from sqlalchemy import event

    queries = []
    for resource_type, name, value in FAST + GENERAL + FAST[:2]:  # a search asked twice is answered twice
        queries.append(query := parse(resource_type, [(name, value)]))
        query.total, query.count = False, count
    with held.resources.unit() as unit:
        expected = [[(r.id, r.version, r.deleted) for r in unit.search(query)[0]] if statements.one_token(query)
                    else None for query in queries]
    statements_run: list[str] = []

    def run(*args: Any) -> None:
        statements_run.append(args[2])

    with held.resources.unit() as unit:
        event.listen(held.engine, "before_cursor_execute", run)
        try:
            found = unit.found_keys(queries)
        finally:
            event.remove(held.engine, "before_cursor_execute", run)
    assert found == expected
    assert ["a"] in [[i for i, _, _ in keys] for keys in found if keys]  # it found some
    assert len([s for s in statements_run if "fhir_search_index" in s]) == 1


@pytest.mark.both_backends
def test_a_token_many_resources_hold_is_not_read_whole(held: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token sixty Patients hold (duplicates an EHR's sync made, say): found_keys reads at most twice the rows the
    pages show in its one statement, and then asks each search alone, its page's rows at most; the answers are
    search's (review 8: the one statement had no limit and read all sixty in the writers' turn)."""
    from service.store import driver

    for n in range(60):
        held.fhir.update("Patient", f"dup{n}", patient(f"dup{n}", (MRN, "dup")))
    queries = [parse("Patient", [("identifier", f"{MRN}|dup")]), parse("Patient", [("identifier", f"{MRN}|1")])]
    for query in queries:
        query.total, query.count = False, 2
    with held.resources.unit() as unit:
        expected = [[(r.id, r.version, r.deleted) for r in unit.search(query)[0]] for query in queries]
    read: list[int] = []
    rows = driver.rows

    def counted(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        found = rows(*args, **kwargs)
        read.append(len(found))
        return found

    monkeypatch.setattr(driver, "rows", counted)
    with held.resources.unit() as unit:
        found = unit.found_keys(queries)
    assert found == expected
    assert [i for i, _, _ in found[0] or []] == ["dup0", "dup1"]
    assert read and max(read) <= 8  # 2 x (2 + 2), not 60


def test_a_match_with_a_total_sort_or_offset_takes_the_general_search() -> None:
    query = parse("Patient", [("identifier", f"{MRN}|1"), ("_total", "accurate")])
    assert statements.one_token(query) is False  # a total asked for
    for total in (False, None):  # none, or the default: the last page's, which needs no count
        query.total = total
        assert statements.one_token(query) is True
    for changed in (parse("Patient", [("identifier", f"{MRN}|1"), ("_sort", "_id")]),
                    parse("Patient", [("identifier", f"{MRN}|1"), ("gender", "female")])):
        changed.total = False
        assert statements.one_token(changed) is False
    query.offset = 2
    assert statements.one_token(query) is False


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_one_statement_looks_up_what_the_matches_and_the_prefetch_find(held: Runtime) -> None:
    """Unit.look_up (store/postgres.LOOK_UP_SQL, PostgreSQL's): the conditional matches it keeps are match_in's, one
    finding two resources or not TOKEN_MATCH's is left to match_in, and the rows it read are the rows, read once."""
    from sqlalchemy import event

    from service.errors import PreconditionFailed
    from service.facade.interactions import condition, match_in

    conditions = [condition(t, f"{name}={value}", "test") for t, name, value in FAST + GENERAL]
    keys = [("Patient", "a"), ("Patient", "gone"), ("Patient", "nobody"), ("Practitioner", "p"), ("Patient", "a")]
    expected: dict[tuple[str, str], Any] = {}
    with held.resources.unit() as unit:
        for when in conditions:
            try:
                expected[when.query.resource_type, when.criteria] = match_in(unit, when)
            except PreconditionFailed:
                expected[when.query.resource_type, when.criteria] = "412"
        rows = {key: unit.get(*key) for key in keys}
    statements_run: list[str] = []

    def run(*args: Any) -> None:
        statements_run.append(args[2])

    with held.resources.unit() as unit:
        unit.look_up(lambda: keys, {(w.query.resource_type, w.criteria): w.query for w in conditions})
        event.listen(held.engine, "before_cursor_execute", run)
        try:
            assert {key: unit.get(*key) for key in keys} == rows
        finally:
            event.remove(held.engine, "before_cursor_execute", run)
        assert statements_run == []  # read by look_up
    fast = {(t, f"{name}={value}") for t, name, value in FAST}
    assert unit.matched == {key: found for key, found in expected.items() if key in fast and found != "412"}
    assert len(unit.matched) == len(FAST) - 1 and expected["Patient", f"identifier={MRN}|4"] == "412"
