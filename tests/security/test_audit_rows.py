"""An event row's parts made without the standard library's slower paths: its id (new_id, str(uuid.uuid4())'s text)
and the access read as it is when bounded() would cut nothing (Access.fits)."""
from __future__ import annotations

import dataclasses
import uuid

import pytest

from service.security.audit import MAX_ENTITIES, MAX_FIELD, MAX_QUERY, Access, Entity, new_id


def test_new_id_is_a_random_version_4_uuid_in_its_usual_text() -> None:
    made = [new_id() for _ in range(2_000)]
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lower case, dashes where uuid4's text has them
    # every bit but the version's and variant's varies (random), as in uuid4
    ints = [uuid.UUID(text).int for text in made]
    fixed = (0xF000 << 64) | (0xC000 << 48)
    assert all(i & fixed == (0x4000 << 64) | (0x8000 << 48) for i in ints)
    varied = 0
    for i in ints:
        varied |= i ^ ints[0]
    assert varied == ((1 << 128) - 1) & ~fixed


def at_limits() -> Access:
    return Access(interaction="read", status=200, client_id="c" * MAX_FIELD, issuer="i" * MAX_FIELD,
                  source_address="a" * MAX_FIELD, server="s" * MAX_FIELD,
                  entities=[Entity("T" * 64, "x" * 64)] * MAX_ENTITIES, patients=[("s", "v")] * MAX_ENTITIES,
                  patient_refs=["Patient/" + "p" * (MAX_FIELD - 8)] * MAX_ENTITIES, query="q" * MAX_QUERY,
                  request_id="r" * MAX_FIELD, description="d" * MAX_QUERY)


def test_an_access_within_every_limit_fits_and_bounded_would_change_nothing() -> None:
    access = at_limits()
    assert access.fits()
    assert access.bounded() == access
    assert Access("read", 200, None, None, None, "http://x/fhir").fits()


@pytest.mark.parametrize("over", [
    {"client_id": "c" * (MAX_FIELD + 1)}, {"issuer": "i" * (MAX_FIELD + 1)},
    {"source_address": "a" * (MAX_FIELD + 1)}, {"server": "s" * (MAX_FIELD + 1)},
    {"query": "q" * (MAX_QUERY + 1)}, {"request_id": "r" * (MAX_FIELD + 1)},
    {"description": "d" * (MAX_QUERY + 1)}, {"entities": [Entity("T" * 65, "x")]},
    {"entities": [Entity("T", "x" * 65)]}, {"entities": [Entity("T")] * (MAX_ENTITIES + 1)},
    {"patients": [("s", "v")] * (MAX_ENTITIES + 1)}, {"patient_refs": ["r" * (MAX_FIELD + 1)]},
    {"patient_refs": ["r"] * (MAX_ENTITIES + 1)},
])
def test_an_access_past_any_limit_does_not_fit_and_bounded_cuts_it(over: dict[str, object]) -> None:
    access = dataclasses.replace(at_limits(), **over)
    assert not access.fits()
    assert access.bounded() != access
    assert access.bounded().fits()
