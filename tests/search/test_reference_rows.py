"""A relative reference a search parameter reads is one index row (search/parameters.index, migration 0014): that
parameter's row, carrying the reference's path, is also the link a delete's referrer check reads. No row set is lost:
every search, chain, `_has`, `_revinclude` and referrer lookup answers as with the two row sets, on rows written now
and on rows 0013 held, migrated."""
from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from service.app.runtime import Runtime
from service.search.parameters import LINK, REFERENCE_PATHS, IndexValue, index, links, searched, unmerged
from service.search.query import parse
from service.store.migrate import MIGRATIONS, downgrade, upgrade
from service.store.resources import Unit

EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "examples"
ELSEWHERE = "https://elsewhere.example/fhir/Encounter/e9"

#: references a parameter reads (twice to one practitioner, once versioned, once absolute) and two none reads
PROCEDURE: dict[str, Any] = {
    "resourceType": "Procedure", "status": "completed", "code": {"text": "infusion"},
    "subject": {"reference": "Patient/p1"}, "encounter": {"reference": ELSEWHERE},
    "performer": [{"actor": {"reference": "Practitioner/n1"}}, {"actor": {"reference": "Practitioner/n1"}},
                  {"actor": {"reference": "Practitioner/n2/_history/3"}}],
    "basedOn": [{"reference": "CarePlan/c1"}], "reasonReference": [{"reference": "Condition/d1"}],
    "extension": [{"url": "urn:x", "valueReference": {"reference": "Patient/p1"}}],
    "contained": [{"resourceType": "Observation", "id": "c", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "Patient/p2"}}]}
OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "urn:c", "code": "hr"}]},
    "subject": {"reference": "Group/g1"}, "partOf": [{"reference": "Procedure/pr1"}],
    "performer": [{"reference": "Practitioner/n2"}]}
PEOPLE: list[tuple[str, str, dict[str, Any]]] = [
    ("Patient", "p1", {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "MRN-1"}]}),
    ("Practitioner", "n1", {"resourceType": "Practitioner", "name": [{"family": "Nurse"}]}),
    ("Practitioner", "n2", {"resourceType": "Practitioner", "name": [{"family": "Other"}]}),
    ("CarePlan", "c1", {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                        "subject": {"reference": "Patient/p1"}}),
    ("Procedure", "pr1", PROCEDURE), ("Observation", "o1", OBSERVATION)]


def _rows(values: list[IndexValue]) -> Counter[tuple[Any, ...]]:
    return Counter((v.param, v.system, v.value, v.path) for v in values)


def test_a_reference_a_parameter_reads_is_one_row_with_its_path() -> None:
    found = [(v.param, v.value, v.path) for v in index(PROCEDURE) if v.path is not None or v.param != "status"]
    assert found == [
        ("subject", "Patient/p1", "Procedure.subject"),
        ("performer", "Practitioner/n1", "Procedure.performer[0].actor"),
        ("performer", "Practitioner/n1", "Procedure.performer[1].actor"),
        ("performer", "Practitioner/n2", "Procedure.performer[2].actor"),
        ("based-on", "CarePlan/c1", "Procedure.basedOn[0]"),
        (LINK, "Condition/d1", "Procedure.reasonReference[0]"),  # no parameter reads these two
        (LINK, "Patient/p1", "Procedure.extension[0].valueReference"),
        ("encounter", "Encounter/e9", None),  # an absolute URL: found by a search, no link (another server's)
    ]


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*-*.json")))  # not the manifest
def test_the_rows_are_the_searched_values_and_the_links_both(name: str) -> None:
    """Nothing of either row set is lost: the rows, taken apart again, are the search values and the links as the
    two sets held them (each value once; each link once, with its path)."""
    resource = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    rows = index(resource)
    expected = searched(resource) + ([] if resource["resourceType"] == "Provenance" else links(resource))
    assert _rows(unmerged(rows)) == _rows(expected)
    assert len(rows) == len(expected) - sum(v.path is not None and v.param != LINK for v in rows)


def test_the_migration_reads_the_parameters_paths_as_they_are_now() -> None:
    spec = importlib.util.spec_from_file_location("m0014", MIGRATIONS / "versions" / "0014_reference_paths.py")
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    copied = migration.PATHS
    assert copied == {t: paths for t, paths in REFERENCE_PATHS.items() if paths and t != "Provenance"}


def _answers(unit: Unit) -> dict[str, Any]:
    def ids(resource_type: str, *items: tuple[str, str]) -> list[str]:
        return sorted(r.id for r in unit.search(parse(resource_type, list(items)))[0])

    return {
        "subject": ids("Procedure", ("subject", "Patient/p1")), "patient": ids("Procedure", ("patient", "p1")),
        "performer n1": ids("Procedure", ("performer", "Practitioner/n1")),
        "performer n2": ids("Procedure", ("performer", "Practitioner/n2")),
        "performer missing": ids("Procedure", ("performer:missing", "true")),
        "encounter elsewhere": ids("Procedure", ("encounter", "Encounter/e9")),
        "encounter present": ids("Procedure", ("encounter:missing", "false")),
        "based-on": ids("Procedure", ("based-on", "CarePlan/c1")),
        "chain": ids("Procedure", ("performer:Practitioner.family", "nurse")),
        "chain patient": ids("Procedure", ("patient.identifier", "urn:mrn|MRN-1")),
        "has": ids("Practitioner", ("_has:Procedure:performer:status", "completed")),
        "part-of": ids("Observation", ("part-of", "Procedure/pr1")),
        "observation patient missing": ids("Observation", ("patient:missing", "true")),
        "revinclude": [r.id for r in unit.referring("Procedure", "performer", ["Practitioner/n1", "Practitioner/n2"])],
        "revinclude observations": [r.id for r in unit.referring("Observation", "part-of", ["Procedure/pr1"])],
        "referrers p1": unit.referrers(["Patient/p1"]),
        "referrers n1 n2": unit.referrers(["Practitioner/n1", "Practitioner/n2"]),
        "referrers d1 g1 pr1": unit.referrers(["Condition/d1", "Group/g1", "Procedure/pr1"]),
        "referrers elsewhere": unit.referrers(["Encounter/e9"]),
        "referrers first two": unit.referrers(["Patient/p1", "Practitioner/n1"], limit=2),
    }


EXPECTED = {
    "subject": ["pr1"], "patient": ["pr1"], "performer n1": ["pr1"], "performer n2": ["pr1"],
    "performer missing": [], "encounter elsewhere": ["pr1"], "encounter present": ["pr1"], "based-on": ["pr1"],
    "chain": ["pr1"], "chain patient": ["pr1"], "has": ["n1", "n2"], "part-of": ["o1"],
    "observation patient missing": ["o1"], "revinclude": ["pr1"], "revinclude observations": ["o1"],
    "referrers p1": [("CarePlan/c1", "CarePlan.subject", "Patient/p1"),
                     ("Procedure/pr1", "Procedure.subject", "Patient/p1"),
                     ("Procedure/pr1", "Procedure.extension[0].valueReference", "Patient/p1")],
    "referrers n1 n2": [("Procedure/pr1", "Procedure.performer[0].actor", "Practitioner/n1"),
                        ("Procedure/pr1", "Procedure.performer[1].actor", "Practitioner/n1"),
                        ("Procedure/pr1", "Procedure.performer[2].actor", "Practitioner/n2"),
                        ("Observation/o1", "Observation.performer[0]", "Practitioner/n2")],
    "referrers d1 g1 pr1": [("Procedure/pr1", "Procedure.reasonReference[0]", "Condition/d1"),
                            ("Observation/o1", "Observation.subject", "Group/g1"),
                            ("Observation/o1", "Observation.partOf[0]", "Procedure/pr1")],
    "referrers elsewhere": [],
    "referrers first two": [("CarePlan/c1", "CarePlan.subject", "Patient/p1"),
                            ("Procedure/pr1", "Procedure.subject", "Patient/p1")],
}


@pytest.fixture
def stored(runtime: Runtime) -> Runtime:
    with runtime.resources.unit(write=True) as unit:
        for resource_type, resource_id, content in PEOPLE:
            unit.write(resource_type, resource_id, content, [], "PUT")
    return runtime


def _table(runtime: Runtime, *columns: str) -> Counter[tuple[Any, ...]]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT r.id, {', '.join(f'i.{c}' for c in columns)} FROM fhir_search_index i "  # noqa: S608
                                 "JOIN fhir_resources r ON r.pk = i.resource_pk"))
        return Counter(tuple(row) for row in rows)


@pytest.mark.both_backends
def test_searches_and_referrers_answer_as_the_two_row_sets_did(stored: Runtime) -> None:
    with stored.resources.unit() as unit:
        assert _answers(unit) == EXPECTED


@pytest.mark.both_backends
def test_0014_makes_the_rows_0013_held_those_written_now_and_back(stored: Runtime) -> None:
    """Down to 0013, the two row sets as they were written then (each parameter's row, and a `_link` row with the
    path in `system`); up again, the rows written now, every answer the same (referrers in the same order)."""
    now = _table(stored, "param", "system", "value", "low", "high", "path")
    with stored.resources.unit() as unit:
        before = _answers(unit)
    downgrade(stored.engine, "0013")
    try:
        then: Counter[tuple[Any, ...]] = Counter()
        for _, resource_id, content in PEOPLE:
            for v in unmerged(index(content)):
                then[resource_id, v.param, v.path if v.param == LINK else v.system, v.value] += 1
        assert _table(stored, "param", "system", "value") == then
        assert then[("pr1", LINK, "Procedure.performer[1].actor", "Practitioner/n1")] == 1
        assert then[("pr1", "performer", None, "Practitioner/n1")] == 2
    finally:
        upgrade(stored.engine)  # a PostgreSQL database is the session's: it stays at the head
    assert _table(stored, "param", "system", "value", "low", "high", "path") == now
    with stored.resources.unit() as unit:
        assert _answers(unit) == before == EXPECTED


@pytest.mark.both_backends
def test_0014_finds_every_link_0013_held(runtime: Runtime) -> None:
    """Rows as 0013's writers wrote them, put there by hand: after 0014 each link is found where it was."""
    with runtime.resources.unit(write=True) as unit:
        unit.write("Procedure", "pr1", PROCEDURE, [], "PUT")
    downgrade(runtime.engine, "0013")
    try:
        with runtime.engine.begin() as conn:
            pk = conn.execute(text("SELECT pk FROM fhir_resources WHERE id = 'pr1'")).scalar()
            conn.execute(text("DELETE FROM fhir_search_index"))
            old = [("performer", None, "Practitioner/n1"), ("performer", None, "Practitioner/n1"),
                   ("encounter", None, "Encounter/e9"), ("_link", "Procedure.performer[0].actor", "Practitioner/n1"),
                   ("_link", "Procedure.performer[1].actor", "Practitioner/n1"),
                   ("_link", "Procedure.reasonReference[0]", "Condition/d1")]
            for param, system, value in old:
                conn.execute(text("INSERT INTO fhir_search_index (resource_pk, resource_type, param, system, value) "
                                  "VALUES (:pk, 'Procedure', :param, :system, :value)"),
                             {"pk": pk, "param": param, "system": system, "value": value})
    finally:
        upgrade(runtime.engine)  # a PostgreSQL database is the session's: it stays at the head
    assert _table(runtime, "param", "value", "path") == Counter({
        ("pr1", "performer", "Practitioner/n1", "Procedure.performer[0].actor"): 1,
        ("pr1", "performer", "Practitioner/n1", "Procedure.performer[1].actor"): 1,
        ("pr1", "encounter", "Encounter/e9", None): 1,
        ("pr1", LINK, "Condition/d1", "Procedure.reasonReference[0]"): 1})
    with runtime.resources.unit() as unit:
        assert unit.referrers(["Practitioner/n1", "Condition/d1"]) == [
            ("Procedure/pr1", "Procedure.performer[0].actor", "Practitioner/n1"),
            ("Procedure/pr1", "Procedure.performer[1].actor", "Practitioner/n1"),
            ("Procedure/pr1", "Procedure.reasonReference[0]", "Condition/d1")]
        assert [r.id for r in unit.search(parse("Procedure", [("performer", "Practitioner/n1")]))[0]] == ["pr1"]
        assert unit.referrers(["Encounter/e9"]) == []


def test_every_row_index_makes_is_an_index_value_of_its_six_fields() -> None:
    """Rows are made by tuple.__new__ bound to IndexValue (no _make frame): each is an IndexValue, equal to the one
    its constructor makes from its fields, its fields read by name."""
    rows = [*index(PROCEDURE), *index(OBSERVATION), *index(PROCEDURE, [("Procedure.subject.reference", "Patient/p1")])]
    assert rows and all(type(row) is IndexValue and len(row) == 6 for row in rows)
    assert all(row == IndexValue(*row) and row.path == row[5] and row.param == row[0] for row in rows)
