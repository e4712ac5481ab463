"""Corrections to fhirpathpy 2.2.4, applied once on import by invariants.py.

Ordering comparisons (<, <=, >, >=) of two element values typed date, dateTime or instant
compared their JSON strings: `start <= end` was false for 2026-01-01T13:30:00+05:30 and
2026-01-01T08:05:00+00:00, the same morning in UTC, so per-1 and our ket-4/ket-11 failed
resources with mixed UTC offsets that the HL7 validator accepts. fhirpathpy already has the
right comparison (FP_DateTime, as for literals); the values just never reached it.
"""
from __future__ import annotations

from typing import Any

from fhirpathpy.engine.invocations import equality
from fhirpathpy.engine.nodes import FP_DateTime, ResourceNode

TEMPORAL = {"date", "dateTime", "instant"}
_typecheck = equality.typecheck


def _temporal(values: list[Any]) -> list[Any]:
    """Element values of a temporal FHIR type as FP_DateTime; everything else unchanged."""
    out = []
    for value in values:
        if isinstance(value, ResourceNode) and value.path in TEMPORAL and isinstance(value.data, str):
            converted = FP_DateTime(value.data)  # type: ignore[no-untyped-call]
            out.append(converted if converted is not None else value)
        else:
            out.append(value)
    return out


def _typecheck_temporal(a: list[Any], b: list[Any]) -> Any:
    return _typecheck(_temporal(a), _temporal(b))  # type: ignore[no-untyped-call]


def apply() -> None:
    equality.typecheck = _typecheck_temporal
