"""Search parameters: the values a resource is indexed under, and how query values are read."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from service.errors import BadRequest
from service.params import EARLIEST, LATEST
from service.search.parameters import PARAMS, _index_one, date_range, index, reference_key, searched, tokens, values_at
from service.search.query import parse


def test_a_period_with_an_open_end_runs_to_the_end_of_time() -> None:
    assert date_range({"start": "2026-03-02"}) == (datetime(2026, 3, 2), LATEST)
    assert date_range({"end": "2026-03-02"})[0] == EARLIEST  # type: ignore[index]
    assert date_range({}) is None


def test_tokens_of_codes_codings_concepts_and_identifiers() -> None:
    assert tokens("final") == [(None, "final")]
    assert tokens({"coding": [{"system": "s", "code": "a"}, {"code": "b"}]}) == [("s", "a"), (None, "b")]
    assert tokens({"system": "mrn", "value": "42"}) == [("mrn", "42")]
    assert tokens({"text": "free text"}) == []


@pytest.mark.parametrize("reference, key", [
    ({"reference": "Patient/1"}, "Patient/1"),
    ({"reference": "https://ehr.example/fhir/Patient/1/_history/3"}, "Patient/1"),
    ({"reference": "urn:uuid:0b7f6a3e"}, None),
    ({"reference": "#contained"}, None),
    ({"display": "no reference"}, None),
])
def test_reference_keys(reference: dict[str, str], key: str | None) -> None:
    assert reference_key(reference) == key


def test_an_observation_is_indexed_by_every_parameter_of_its_type() -> None:
    observation = {"resourceType": "Observation", "status": "final", "identifier": [{"system": "s", "value": "v"}],
                   "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                   "subject": {"reference": "Patient/p1"}, "effectivePeriod": {"start": "2026-03-02"},
                   "partOf": [{"reference": "MedicationAdministration/m1"}]}
    found = {(v.param, v.system, v.value) for v in index(observation) if v.low is None}
    assert {("status", None, "final"), ("identifier", "s", "v"), ("code", "http://loinc.org", "8867-4"),
            ("subject", None, "Patient/p1"), ("part-of", None, "MedicationAdministration/m1")} <= found
    assert not {v for v in found if v[0] == "patient"}  # answered from the subject rows (Param.rows)
    (date,) = [v for v in index(observation) if v.param == "date"]
    assert (date.low, date.high) == (datetime(2026, 3, 2), LATEST)


def test_query_values_are_read_with_their_prefixes_and_alternatives() -> None:
    query = parse("Observation", [("date", "ge2026-03-02"), ("code", "http://loinc.org|8867-4,|x"),
                                  ("_count", "500"), ("_sort", "-date")])
    date, code = query.criteria
    assert date.matches[0].prefix == "ge" and date.matches[0].low == datetime(2026, 3, 2)
    assert [(m.system, m.system_given, m.value) for m in code.matches] == [
        ("http://loinc.org", True, "8867-4"), (None, True, "x")]
    assert query.count == 200 and query.sort == [("date", True)]


def test_unknown_parameters_are_named_unless_lenient() -> None:
    with pytest.raises(BadRequest) as refused:
        parse("Observation", [("colour", "red"), ("code:above", "x")])
    assert [i.field for i in refused.value.issues] == ["colour", "code:above"]
    assert parse("Observation", [("colour", "red")], lenient=True).ignored == ["colour"]


def test_a_provenance_is_indexed_by_its_targets_once_without_link_rows() -> None:
    provenance = {"resourceType": "Provenance", "recorded": "2026-03-02T10:00:00Z",
                  "target": [{"reference": "Observation/o1/_history/1"}, {"reference": "Patient/p1/_history/2"}],
                  "agent": [{"who": {"reference": "Device/d1"}}]}
    found = [(v.param, v.value) for v in index(provenance) if v.low is None]
    assert sorted(found) == [("patient", "Patient/p1"), ("target", "Observation/o1"), ("target", "Patient/p1")]


def test_values_at_reads_every_item_of_every_step_and_a_choice_at_the_last() -> None:
    """The index reads its paths split once per path (parameters._steps): the values are those of each step's items
    in document order, a list flattened at every step, a missing last step read as a choice (`effective` →
    `effectiveDateTime`), and nothing below a missing inner step or a value that is no object."""
    resource = {"name": [{"given": ["Ann", "Bo"], "family": "Lee"}, {"given": "Cy"}, "odd", {"text": "x"}],
                "effectiveDateTime": "2026-03-02", "effectiveInstant": ["2026-03-03T00:00:00Z"],
                "effectivelyNot": 1, "performer": [{"actor": {"reference": "Practitioner/1"}}]}
    assert values_at(resource, "name.given") == ["Ann", "Bo", "Cy"]
    assert values_at(resource, "name.family") == ["Lee"]
    assert values_at(resource, "effective") == ["2026-03-02", "2026-03-03T00:00:00Z"]
    assert values_at(resource, "performer.actor") == [{"reference": "Practitioner/1"}]
    assert values_at(resource, "contact.name") == [] and values_at(resource, "name.given.x") == []
    (row,) = [v for v in index({"resourceType": "Patient", "name": [{"given": ["Ann"]}]}) if v.param == "given"]
    assert row == ("given", "Ann", "ann", None, None, None)  # a row's values, in the order the store sends them


EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "examples"
#: values of every shape a path may hold, odd ones too: a row is made of what each is, whatever the element
ODD = [None, "", "final", 0, True, False, [], {}, ["a", 3], {"reference": 3}, {"reference": "Patient/p9"},
       {"coding": "ab"}, {"coding": [None, "c", {"code": 1}, {"system": "s", "code": "k"}]}, {"system": "s", "value": "v"},
       {"start": "2026-03-02T09:00:00-05:00"}, {"start": 5}, "2026-13-01", "2026-03-05T10:00:00+14:00", "x" * 600]


def _resources() -> list[dict[str, Any]]:
    examples = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(EXAMPLES.glob("*-*.json"))]
    odd = [{"resourceType": t, **{path.split(".")[0]: value for p in params.values() for path in p.paths}}
           for t, params in PARAMS.items() for value in ODD]
    return examples + odd


@pytest.mark.parametrize("resource", _resources())
def test_each_parameters_rows_are_those_of_each_value_at_its_paths(resource: dict[str, Any]) -> None:
    """searched() makes a token's and a date's rows in line: the rows are still, parameter by parameter and path by
    path, those `_index_one` makes of each value the path holds, in that order."""
    params = PARAMS.get(resource["resourceType"], {}).values()
    assert searched(resource) == [row for p in params if not p.rows for path in p.paths
                                  for value in values_at(resource, path) for row in _index_one(p, value)]
