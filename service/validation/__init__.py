"""Profile validation: StructureDefinitions compiled into plans, resource JSON walked against them.

    validate(resource, profile=None) -> OperationOutcome (dict)
    ensure_valid(resource, profile=None)  raises Unprocessable carrying every error
"""
from __future__ import annotations

from functools import cache
from typing import Any

from service.conformance.definitions import load
from service.errors import Issue, Unprocessable
from service.validation.engine import Validator
from service.validation.outcome import has_errors, operation_outcome


@cache
def default_validator() -> Validator:
    """R4 core plus the shipped implementation guide, compiled lazily and kept for the process."""
    return Validator(load())


def validate(resource: Any, profile: str | None = None) -> dict[str, Any]:
    return operation_outcome(default_validator().validate(resource, profile))


def ensure_valid(resource: Any, profile: str | None = None) -> None:
    findings = default_validator().validate(resource, profile)
    if has_errors(findings):
        issues = [Issue(f.expression, f.message) for f in findings if f.severity in ("error", "fatal")]
        raise Unprocessable("The resource does not conform to its profile.", issues)
