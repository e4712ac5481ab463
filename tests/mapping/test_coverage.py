"""Every field of the record contract is mapped or listed as deliberately unmapped, with a reason."""
from __future__ import annotations

import pytest

from service.mapping import Mapper
from service.mapping.coverage import contract_fields, uncovered
from service.mapping.spec import Unmapped

KINDS = ["treatment-plan", "administration", "adverse-event", "assessment"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_contract_field_is_mapped_or_excused(mapper: Mapper, kind: str) -> None:
    assert uncovered(mapper.specs[kind]) == []


@pytest.mark.parametrize("kind", KINDS)
def test_unmapped_entries_name_real_fields_and_give_reasons(mapper: Mapper, kind: str) -> None:
    fields = [f.replace("[]", "") for f in contract_fields(kind)]
    for entry in mapper.specs[kind].unmapped:
        assert any(f == entry.field or f.startswith(entry.field + ".") for f in fields), entry.field
        assert len(entry.why) > 40, entry.field


def test_a_field_dropped_from_a_spec_is_reported(mapper: Mapper) -> None:
    spec = mapper.specs["administration"]
    roles = tuple(type(role)(**{**role.__dict__, "rules": tuple(r for r in role.rules if r.field != "lot_number")})
                  for role in spec.roles)
    without_lot = type(spec)(**{**spec.__dict__, "roles": roles})
    assert uncovered(without_lot) == ["lot_number"]
    with_reason = type(spec)(**{**spec.__dict__, "roles": roles,
                                "unmapped": (*spec.unmapped, Unmapped("lot_number", "because"))})
    assert uncovered(with_reason) == []


def test_contract_fields_follow_the_schema() -> None:
    fields = contract_fields("administration")
    assert "vitals[].systolic" in fields and "performer.identifier.value" in fields
    assert "external_id" not in fields
