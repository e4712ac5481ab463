"""Profile validation: StructureDefinitions compiled into plans, resource JSON walked against them.

    validate(resource, profile=None) -> OperationOutcome (dict)
    settle() -> Validator                 the default validator warmed and the heap frozen, for a long-lived process
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


def settle() -> Validator:
    """The default validator made ready for a long-lived process (the production server calls this before it forks
    its workers; bench/child.py does as the server does): compiled, warmed on the shipped valid examples, then every
    object alive moved out of the garbage collector's reach (gc.freeze) once the garbage among them is collected.

    Each profile's plan, its walks and the libraries its checks import are built on first use: half the validator's
    80,000 objects (the invalid examples would add 3 % more, for another second of start-up). The collector's full
    collections walk every object it tracks, and they come while a large document is parsed (its objects outnumber
    the collector's thresholds): a Bundle of 1,000 entries walked the validator's objects two or three times per
    document, about 6 % of its time, reclaiming nothing. Frozen objects are still freed by reference counting; only
    a cycle among them would outlive its use, and the validator lives as long as the process anyway. After a fork
    the workers' collections leave the frozen objects' pages alone, so those stay shared (gc.freeze's advice)."""
    import gc
    import json

    from service.resources import profiles_dir

    validator = default_validator()
    for path in sorted((profiles_dir() / "examples").glob("*.json")):
        if path.name != "manifest.json":
            validator.validate(json.loads(path.read_text(encoding="utf-8")))
    gc.collect()
    gc.freeze()
    return validator


def validate(resource: Any, profile: str | None = None) -> dict[str, Any]:
    from service.fhirjson import operation_outcome

    return operation_outcome(default_validator().validate(resource, profile))


def ensure_valid(resource: Any, profile: str | None = None) -> None:
    from service.fhirjson import refuse_errors

    refuse_errors(default_validator().validate(resource, profile), "The resource does not conform to its profile.")
