"""SMART scopes: v2 letters, v1 words, the wildcard's reach, and what grants nothing."""
from __future__ import annotations

import pytest

from service.errors import Forbidden
from service.security.scopes import MAX_REMEMBERED, Grant, parse


@pytest.mark.parametrize(("scope", "parsed"), [
    ("system/MedicationAdministration.cruds", ("MedicationAdministration", "cruds")),
    ("system/*.rs", ("*", "rs")),
    ("system/Patient.r", ("Patient", "r")),
    ("system/*.read", ("*", "rs")),          # v1 read = v2 rs
    ("system/*.write", ("*", "cud")),        # v1 write = v2 cud
    ("system/*.*", ("*", "cruds")),
    ("system/ketamine-records.write", ("ketamine-records", "cud")),
])
def test_scopes_parse_to_type_and_letters(scope: str, parsed: tuple[str, str]) -> None:
    assert parse(scope) == parsed


@pytest.mark.parametrize("scope", [
    "patient/Observation.rs",                # needs a launch context this server has not got
    "user/*.cruds",
    "system/Observation.rs?category=vital-signs",  # a narrowing this server cannot enforce
    "system/Patient.sr",                     # v2 letters must come in c r u d s order
    "system/Patient.",
    "system/Patient.x",
    "openid", "launch/patient", "",
])
def test_scopes_that_grant_nothing(scope: str) -> None:
    assert parse(scope) is None
    assert not Grant.of([scope]).allows("Patient", "r")


def test_a_grant_unions_its_scopes_per_type() -> None:
    grant = Grant.of("system/Patient.rs system/Observation.c system/*.s")
    assert grant.allows("Patient", "rs")
    assert grant.allows("Observation", "cs")        # s from the wildcard, c named
    assert not grant.allows("Observation", "r")
    assert not grant.allows("Patient", "u")


def test_the_wildcard_never_reaches_the_audit_trail_or_the_domain_api() -> None:
    grant = Grant.of("system/*.cruds")
    assert grant.allows("MedicationAdministration", "cruds")
    for named in ("AuditEvent", "ketamine-records", "ketamine-exchange"):
        assert not grant.allows(named, "r")
    assert Grant.of("system/AuditEvent.rs").allows("AuditEvent", "rs")


def test_require_names_the_scope_that_would_allow_it() -> None:
    with pytest.raises(Forbidden) as refused:
        Grant.of("system/Patient.rs").require("Patient", "c")
    assert "system/Patient.c" in refused.value.detail
    assert refused.value.challenge == \
        'Bearer realm="ketamine-fhir", error="insufficient_scope", scope="system/Patient.c"'


def test_a_grant_answers_the_same_when_it_remembers_a_types_letters() -> None:
    """A Grant parses its scopes once and remembers each type's letters (a request asks 2-4 times): asked again, and
    for more types than it remembers, it answers as a fresh Grant does."""
    scopes = "system/Patient.rs system/*.c system/ketamine-records.cud system/Observation.read system/x.sr"
    grant = Grant.of(scopes)
    types = ["Patient", "Observation", "AuditEvent", "ketamine-records", "ketamine-exchange", "Encounter"]
    types += [f"Type{i}" for i in range(MAX_REMEMBERED + 10)]
    for _ in range(2):
        for kind in types:
            for letters in ("c", "r", "u", "d", "s", "rs", "cud", "cruds", ""):
                assert grant.allows(kind, letters) == Grant.of(scopes).allows(kind, letters), (kind, letters)
    assert len(grant._remembered) == MAX_REMEMBERED  # a client naming types in URLs cannot grow it further
    assert grant == Grant.of(scopes) and hash(grant) == hash(Grant.of(scopes))  # what it remembers is no field
