"""The state of one validation run: the findings so far and the resources being walked."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.fhirjson import Finding
from service.validation.plan import StructurePlan
from service.validation.policy import ValidationPolicy


@dataclass
class Run:
    """The state of one validation: findings so far and the resources being walked."""

    root: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    #: %rootResource of each resource walked: itself, or for a contained resource its container (FHIRPath
    #: §"environment variables"); a Bundle's entries are roots of their own, not parts of the Bundle
    roots: list[dict[str, Any]] = field(default_factory=list)
    plans: list[StructurePlan] = field(default_factory=list)
    full_urls: dict[str, str] = field(default_factory=dict)  # Bundle entry fullUrl → resourceType
    #: the last Bundle's entry list of which every entry holds bdl-5 and bdl-8 (bundles.py found it so)
    quiet_entries: list[Any] | None = None
    primitive_owner: str | None = None  # the element whose `_field` extensions are being walked
    owner_types: tuple[str, ...] = ()  # the datatype(s) of the element whose extensions are being walked
    must_support: bool = False  # report absent mustSupport elements (information)
    policy: ValidationPolicy = field(default_factory=ValidationPolicy)
    #: per resource being walked, the ids its elements have so far → the object holding each (ids.py)
    ids: list[dict[str, int]] = field(default_factory=list)
    #: (id of an extension, id of its definition's element list) walked with no finding (Values._clean_against_
    #: definition): the slice naming that definition need not walk it again
    clean: set[tuple[int, int]] = field(default_factory=set)
    #: how many sliced elements are being walked (Validator._element), and the objects walked inside them with no
    #: finding: (id of the object, id of its element list, owner_types, primitive_owner, id of its resource)
    sliced: int = 0
    walked: set[tuple[Any, ...]] = field(default_factory=set)

    def add(self, severity: str, code: str, expression: str, message: str) -> None:
        self.findings.append(Finding(severity, code, expression, message))
