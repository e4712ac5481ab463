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
                     {"resourceType": "Practitioner", "id": "p", "identifier": [{"system": MRN, "value": "1"}]}):
        runtime.fhir.update(resource["resourceType"], resource["id"], resource)
    runtime.fhir.delete("Patient", "gone")
    return runtime


FAST = [("Patient", "identifier", f"{MRN}|1"), ("Patient", "identifier", f"{OTHER}|1"),
        ("Patient", "identifier", f"{OTHER}|3"), ("Patient", "identifier", f"{MRN}|3"),
        ("Patient", "identifier", f"{MRN}|4"), ("Patient", "identifier", f"{MRN}|5"),
        ("Practitioner", "identifier", f"{MRN}|1"), ("Patient", "identifier", f"{MRN}|nobody")]
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
