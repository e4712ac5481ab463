"""Profile validation: StructureDefinitions compiled into plans, resource JSON walked against them.

    validate(resource, profile=None) -> OperationOutcome (dict)
    ensure_valid(resource, profile=None)  raises Unprocessable carrying every error
    ours(defs=None) -> Validator           judges a resource that names no profile by ours of its type
"""
from __future__ import annotations

from functools import cache
from typing import Any

from service.conformance.definitions import Definitions, load
from service.conformance.profiles import shipped
from service.fhirjson import operation_outcome, refuse_errors
from service.validation.engine import Validator


def ours(defs: Definitions | None = None, **options: Any) -> Validator:
    """A validator of `defs` (default: R4 core and the shipped IG) that judges a resource without meta.profile
    by the shipped IG's profile of its type (service/conformance/profiles.py), as the service does."""
    return Validator(defs or load(), shipped().defaults, **options)


@cache
def default_validator() -> Validator:
    """R4 core plus the shipped implementation guide, compiled lazily and kept for the process."""
    return ours()


def validate(resource: Any, profile: str | None = None) -> dict[str, Any]:
    return operation_outcome(default_validator().validate(resource, profile))


def ensure_valid(resource: Any, profile: str | None = None) -> None:
    refuse_errors(default_validator().validate(resource, profile), "The resource does not conform to its profile.")
