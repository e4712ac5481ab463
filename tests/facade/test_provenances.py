"""A request's create has its Provenance drafted before its unit of work (provenances.provenance_ahead): what it
writes, recorded at the unit's time, is what write_provenance makes there from nothing."""
from __future__ import annotations

import pytest

from service.facade.provenances import RECORDED, provenance_ahead, provenance_rows
from service.security.provenance import provenance
from service.store.batch import rest_of

TARGET = "MedicationAdministration/0b5c2b9e-0d3e-4c1e-9f7a-1d2e3f4a5b6c/_history/1"


@pytest.mark.parametrize("author", [None, ("https://issuer", "ehr"), ("https://issuer/\"odd\"", "é ✓ \\ client")])
@pytest.mark.parametrize("recorded", ["2026-03-02T09:00:00.123Z", "2026-12-31T23:59:59.000000+00:00", "not a date"])
@pytest.mark.parametrize("target", [TARGET, "Patient/p1/_history/1"])
def test_a_drafted_provenance_recorded_is_the_one_made_in_the_unit(author: tuple[str, str] | None, recorded: str,
                                                                   target: str) -> None:
    told = provenance_ahead(author, target)
    assert told is not None and told.by == (author, None)
    content = provenance([target], True, recorded, author)
    made = told.recorded(recorded)
    assert made == (content, provenance_rows([target], recorded), rest_of(content))
    assert list(made[0]) == list(content)  # the members in the order they are serialised


@pytest.mark.parametrize("author", [("https://issuer", RECORDED), (RECORDED, "ehr")])
def test_a_client_named_as_the_mark_is_not_drafted(author: tuple[str, str]) -> None:
    assert provenance_ahead(author, TARGET) is None


def test_a_target_index_does_not_read_as_a_write_names_it_is_not_drafted() -> None:
    assert provenance_ahead(None, "Patient/_history/1") is None
