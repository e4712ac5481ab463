"""A search's page statement is built once for its shape (store/pages.py) and run with each query's values: what it
finds must be what a statement built for that query alone finds, for every kind of criterion, whichever query of
the shape came first."""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest

from service.app.runtime import Runtime
from service.search.query import parse
from service.store import pages

MRN = "https://clinic.example/mrn"
LOINC = "http://loinc.org"


def patient(pid: str, family: str, mrn: str, born: str, system: str | None = MRN) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}], "birthDate": born,
            "identifier": [{"value": mrn} | ({"system": system} if system else {})]}


def observation(oid: str, who: str, code: str, when: str, category: bool) -> dict[str, Any]:
    found: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": "final",
                             "code": {"coding": [{"system": LOINC, "code": code}]},
                             "subject": {"reference": f"Patient/{who}"}, "effectiveDateTime": when}
    if category:
        found["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": "vital-signs"}]}]
    return found


@pytest.fixture
def held(runtime: Runtime) -> Runtime:
    for resource in (patient("ana", "Ñúñez", "MRN-1", "1980-01-01"), patient("bo", "Nunez", "MRN-2", "1990-05-05"),
                     patient("cy", "Abernunez", "MRN-3", "2000-12-31", None),
                     observation("o1", "ana", "8867-4", "2026-03-02T10:00:00Z", True),
                     observation("o2", "ana", "8480-6", "2026-03-04T10:00:00Z", False),
                     observation("o3", "bo", "8867-4", "2026-03-06T10:00:00Z", False),
                     observation("gone", "bo", "8867-4", "2026-03-06T10:00:00Z", False),
                     patient("twice", "Twice", "MRN-1", "1970-01-01") | {"identifier": [{"system": MRN, "value": "MRN-1"},
                                                                                         {"value": "MRN-1"}]}):
        runtime.fhir.update(resource["resourceType"], resource["id"], resource)
    runtime.fhir.delete("Observation", "gone")
    return runtime


#: queries of one shape each (their values differ), then a few whose shapes differ
SHAPES = [
    ["Patient?family=nunez", "Patient?family=aber", "Patient?family=zz"],
    ["Patient?family:exact=Ñúñez", "Patient?family:exact=Nunez"],
    ["Patient?family:contains=NUNE", "Patient?family:contains=bern"],
    [f"Patient?identifier={MRN}|MRN-1&_sort=_id", f"Patient?identifier={MRN}|MRN-2&_sort=_id"],
    ["Patient?identifier=MRN-1", "Patient?identifier=MRN-2", "Patient?identifier=MRN-9"],
    ["Patient?identifier=MRN-1&_count=1&_offset=1", "Patient?identifier=MRN-2&_count=1&_offset=1"],
    ["Observation?code=8867-4", "Observation?code=8480-6"],
    [f"Observation?subject=Patient/ana&code={LOINC}|8867-4", f"Observation?subject=Patient/bo&code={LOINC}|8480-6",
     f"Observation?subject=Patient/bo&code={LOINC}|8867-4"],
    ["Observation?code=8867-4&date=ge2026-03-05", "Observation?code=8867-4&date=ge2026-03-01"],
    ["Patient?identifier=|MRN-1", "Patient?identifier=|MRN-3"],
    ["Patient?_id=ana,bo", "Patient?_id=cy,bo", "Patient?_id=nobody,cy"],
    ["Patient?birthdate=1980", "Patient?birthdate=1990-05", "Patient?birthdate=2000-12-31"],
    ["Observation?subject=Patient/ana", "Observation?subject=Patient/bo", "Observation?subject=Patient/cy"],
    ["Observation?date=ge2026-03-03", "Observation?date=ge2026-03-05"],
    ["Observation?date=lt2026-03-05&_sort=-date", "Observation?date=lt2026-03-03&_sort=-date"],
    ["Observation?date=le2026-03-04&date=gt2026-03-01", "Observation?date=le2026-03-06&date=gt2026-03-03"],
    ["Observation?_lastUpdated=gt2000-01-01", "Observation?_lastUpdated=gt2100-01-01"],
    [f"Observation?code={LOINC}|8867-4,{LOINC}|8480-6", f"Observation?code={LOINC}|8480-6,{LOINC}|1-8"],
    [f"Observation?code:not={LOINC}|8867-4", f"Observation?code:not={LOINC}|8480-6"],
    ["Observation?patient.identifier=MRN-1", "Observation?patient.identifier=MRN-2"],
    ["Observation?subject:Patient.name=nunez", "Observation?subject:Patient.name=aber"],
    [f"Patient?_has:Observation:subject:code={LOINC}|8867-4", f"Patient?_has:Observation:subject:code={LOINC}|8480-6"],
    ["Observation?patient=ana&_total=accurate&_count=1", "Observation?patient=bo&_total=accurate&_count=1"],
    ["Observation?patient=ana&_total=accurate&_count=1&_offset=1",
     "Observation?patient=bo&_total=accurate&_count=1&_offset=5"],
    ["Observation?status=final&_count=2", "Observation?status=final&_count=2&_offset=2"],
    ["Observation?status=final&_count=2&_offset=1", "Observation?status=final&_count=2&_offset=3"],
]
OTHERS = ["Observation?category:missing=true", "Observation?category:missing=false", "Observation?status=final",
          "Observation?status=final&_total=accurate", "Observation?status=final&_sort=_lastUpdated"]


def found(runtime: Runtime, url: str) -> tuple[list[str], int | None]:
    resource_type, _, raw = url.partition("?")
    with runtime.resources.unit() as unit:
        page, total = unit.search(parse(resource_type, parse_qsl(raw)))
    return [r.id for r in page], total


def alone(runtime: Runtime, url: str) -> tuple[list[str], int | None]:
    pages._built.clear()
    return found(runtime, url)


@pytest.mark.both_backends
@pytest.mark.parametrize("urls", SHAPES, ids=[urls[0] for urls in SHAPES])
def test_a_statement_built_for_one_query_finds_what_each_of_its_shape_finds(held: Runtime, urls: list[str]) -> None:
    expected = {url: alone(held, url) for url in urls}
    assert len({str(v) for v in expected.values()}) > 1 or len(urls) == 1, "the values must change what is found"
    for first in urls:  # whichever query built the statement, the others run it with their values
        pages._built.clear()
        order = [first] + [u for u in urls if u != first] + [first]
        assert {url: found(held, url) for url in order} == expected
        assert len(pages._built) == 1  # one statement for the shape


@pytest.mark.both_backends
def test_queries_of_different_shapes_get_statements_of_their_own(held: Runtime) -> None:
    expected = {url: alone(held, url) for url in OTHERS}
    pages._built.clear()
    assert {url: found(held, url) for url in OTHERS + OTHERS} == expected
    assert len(pages._built) == len(OTHERS)


@pytest.mark.both_backends
def test_one_value_of_a_token_or_a_reference_reads_the_page_off_the_index_in_key_order(held: Runtime) -> None:
    """The bench's searches (patient, status): the page's keys come from the index rows of the value, in key order
    (pages._driven); a deleted resource and a value held twice are still left out and counted once."""
    assert found(held, "Patient?identifier=MRN-1") == (["ana", "twice"], 2)
    assert found(held, "Observation?code=8867-4") == (["o1", "o3"], 2)
    assert found(held, "Observation?code=8867-4&_count=1") == (["o1"], None)
    for url in ("Observation?patient=ana&_count=10", "Observation?status=final&_count=10",
                "Observation?code=8867-4&date=ge2026-03-05"):
        resource_type, _, raw = url.partition("?")
        page, _params = pages.page(parse(resource_type, parse_qsl(raw)), 11)
        assert " driver" in str(page.keyed)
    for url in ("Observation?status=final&_sort=_id", "Observation?status=final&_total=accurate",
                "Observation?code=8867-4,8480-6", "Observation?code:not=8867-4", "Observation?date=ge2026-03-05"):
        resource_type, _, raw = url.partition("?")
        page, _params = pages.page(parse(resource_type, parse_qsl(raw)), 11)
        assert " driver" not in str(page.keyed)


def test_the_least_recently_used_statement_goes_first(held: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "CACHED", 2)
    pages._built.clear()
    for url in ("Patient?family=a", "Patient?gender=male", "Patient?family=b", "Patient?birthdate=1980"):
        found(held, url)
    assert [key[1][0][0] for key in pages._built] == ["family", "birthdate"]
