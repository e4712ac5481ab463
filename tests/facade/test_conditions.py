"""A conditional create's or update's criteria (interactions.condition) are parsed once for the same type and text:
each call still gets a search of its own, equal to a fresh parse's, and what cannot be searched is refused each time,
named as the caller names it."""
from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from service.errors import BadRequest
from service.facade import interactions
from service.facade.interactions import condition
from service.search.query import parse

CRITERIA = "identifier=http%3A%2F%2Fhospital.example.org%2Fmrn%7CMRN-001&family=Okafor"


def test_a_condition_asked_again_is_the_one_parsed_first_and_its_own() -> None:
    first, again = condition("Patient", CRITERIA, "the patient"), condition("Patient", CRITERIA, "entry[0] criteria")
    fresh = parse("Patient", parse_qsl(CRITERIA))
    fresh.count, fresh.total = 2, False
    assert first == again and first.query == fresh
    assert first.key == "family=Okafor&identifier=http%3A%2F%2Fhospital.example.org%2Fmrn%7CMRN-001"
    assert first.query is not again.query and vars(first.query) == vars(fresh) and type(first.query) is type(fresh)
    first.query.offset += 2  # paged by one caller (as store/identified pages its queries)
    assert condition("Patient", CRITERIA, "x").query.offset == 0


def test_a_condition_is_parsed_once() -> None:
    interactions._parsed.cache_clear()
    for _ in range(3):
        condition("Practitioner", "identifier=urn:oid:1|42", "the performer")
    assert interactions._parsed.cache_info().misses == 1


@pytest.mark.parametrize("what", ["If-None-Exist", "entry[3] criteria"])
def test_criteria_that_cannot_be_searched_are_refused_each_time_named_by_the_caller(what: str) -> None:
    for _ in range(2):
        with pytest.raises(BadRequest) as empty:
            condition("Patient", "", what)
        assert empty.value.detail == f"{what} has no search criteria."
        with pytest.raises(BadRequest) as unknown:
            condition("Patient", "nosuchparam=1", what)
        assert "nosuchparam" in str(unknown.value.detail) + str(unknown.value.issues)
