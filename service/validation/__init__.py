"""Profile validation: StructureDefinitions compiled into plans, resource JSON walked against them.

    validate(resource, profile=None) -> OperationOutcome (dict)
    ensure_valid(resource, profile=None)  raises Unprocessable carrying every error
    ours(defs=None, policy=None) -> Validator   by default the FHIR facade's store policy: a resource that names
                                                no profile is judged by ours of its type
    ValidationPolicy (policy.py)          what a run accepts beyond FHIR's rules; default: the HL7 validator's

Nothing heavy is imported here: settings (service/config.py) read policy.py without loading the validator.
"""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.conformance.definitions import Definitions
    from service.validation.engine import Validator
    from service.validation.policy import ValidationPolicy


def ours(defs: Definitions | None = None, policy: ValidationPolicy | None = None) -> Validator:
    """A validator of `defs` (default: R4 core and the shipped IG) whose own policy is `policy` (default: the FHIR
    facade's store policy, which judges a resource without meta.profile by the shipped IG's profile of its type)."""
    from service.conformance.definitions import load
    from service.validation.engine import Validator
    from service.validation.policy import ValidationPolicy

    return Validator(defs or load(), policy or ValidationPolicy.store())


@cache
def default_validator() -> Validator:
    """R4 core plus the shipped implementation guide, compiled lazily and kept for the process."""
    return ours()


def validate(resource: Any, profile: str | None = None) -> dict[str, Any]:
    from service.fhirjson import operation_outcome

    return operation_outcome(default_validator().validate(resource, profile))


def ensure_valid(resource: Any, profile: str | None = None) -> None:
    from service.fhirjson import refuse_errors

    refuse_errors(default_validator().validate(resource, profile), "The resource does not conform to its profile.")
