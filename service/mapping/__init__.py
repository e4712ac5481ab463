"""Mappings between clinic records and FHIR R4, executed from the specifications in mappings/.

    map_record(kind, record, findings) -> Mapped   a validated transaction Bundle with a DetectedIssue per
                                                finding (raises if invalid)
    read_fhir(payload) -> Reversed              the record a Bundle or resource describes
    default_mapper() -> Mapper                  the shipped specifications, compiled once
    main_profiles() -> {type: profile}          the profile of each record kind's main resource
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

from marshmallow import ValidationError

from service.conformance.definitions import load
from service.domain import loading, rules
from service.domain.findings import Finding
from service.domain.kinds import schema_of
from service.errors import Issue, Unprocessable
from service.fhirjson import Finding as Said
from service.fhirjson import has_errors, operation_outcome
from service.mapping.engine import Mapper
from service.mapping.explain import record_issues
from service.mapping.flags import add_flags
from service.mapping.reverse import Reversed
from service.mapping.spec import load_all
from service.mapping.transforms import MappingError
from service.validation import default_validator

__all__ = ["Mapped", "Mapper", "MappingError", "Reversed", "default_mapper", "main_profiles", "map_record",
           "read_fhir"]


@dataclass(frozen=True)
class Mapped:
    kind: str
    bundle: dict[str, Any]
    said: list[Said]             # what the validator said of the Bundle (no error)

    @cached_property
    def outcome(self) -> dict[str, Any]:
        """The validation OperationOutcome of the Bundle, made when asked: a record's create does not read it
        (~0.09 M instructions a clinic record)."""
        return operation_outcome(self.said)

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return [i for i in self.outcome["issue"] if i["severity"] == "warning"]


@cache
def default_mapper() -> Mapper:
    return Mapper(load_all(), load())


@cache
def main_profiles() -> dict[str, str]:
    """Resource type → the profile of a record kind's main resource, the first resource of its mapping in
    mappings/: what is read back into a record when it is written as FHIR, or pulled from an EHR."""
    return {s.primary.type: s.primary.profile for s in load_all().values() if s.primary.profile}


def map_record(kind: str, record: dict[str, Any], mapper: Mapper | None = None,
               findings: list[dict[str, Any]] | None = None) -> Mapped:
    """Map a record (in the canonical form the intake stores) and validate the Bundle.

    `findings`: the record's clinical findings as the intake stored them (its `warnings`); each becomes a
    DetectedIssue. None: found again here by the rules that need no other record.
    A Bundle that breaks our profiles never leaves: Unprocessable carries the OperationOutcome.
    """
    mapper = mapper or default_mapper()
    try:
        bundle = mapper.to_bundle(kind, record)
        add_flags(bundle, mapper.specs[kind], record, _findings(kind, record) if findings is None else findings)
    except MappingError as exc:
        raise Unprocessable(f"The {kind} record cannot be mapped to FHIR: {exc}",
                            [Issue(name, str(exc)) for name in exc.fields or ("$",)]) from None
    validation = default_validator().validate(bundle)
    if has_errors(validation):
        # named by the record fields that made the elements at fault; the FHIR path stays as detail
        raise Unprocessable(f"The FHIR resources mapped from this {kind} record break the profiles.",
                            record_issues(mapper, kind, record, bundle, validation),
                            operation_outcome=operation_outcome(validation))
    return Mapped(kind, bundle, validation)


def _findings(kind: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        loaded = loading.loaded(schema_of(kind), record)
    except ValidationError:  # not a record the intake would take: nothing to flag
        return []
    return [i.as_dict() for i in rules.check(kind, loaded) if isinstance(i, Finding)]


def read_fhir(payload: dict[str, Any], resolve: Any = None, mapper: Mapper | None = None) -> Reversed:
    """The record a FHIR Bundle or resource describes; Unprocessable when it cannot say."""
    mapper = mapper or default_mapper()
    try:
        return mapper.to_record(payload, resolve)
    except MappingError as exc:
        raise Unprocessable(f"The FHIR content cannot be read as a clinic record: {exc}", [Issue("$", str(exc))]) \
            from None
