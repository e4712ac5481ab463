"""Corrections to fhirpathpy 2.2.4, applied once on import by invariants.py.

Ordering comparisons (<, <=, >, >=) of two element values typed date, dateTime or instant
compared their JSON strings: `start <= end` was false for 2026-01-01T13:30:00+05:30 and
2026-01-01T08:05:00+00:00, the same morning in UTC, so per-1 and our ket-4/ket-11 failed
resources with mixed UTC offsets that the HL7 validator accepts. fhirpathpy already has the
right comparison (FP_DateTime, as for literals); the values just never reached it.

And one speed-up: FP_DateTime turns its text into a datetime with dateutil's parser (about 100 µs) for
every ordering comparison; per-1 compares every Period. ISO 8601 text in the forms FHIR sends (a date, or
a date and time to the second, up to 6 fraction digits, with or without an offset) goes through
datetime.fromisoformat instead, which gives the same instant (tests/validation/test_fhirpath_fixes.py
compares the two); anything else still goes to dateutil.
"""
from __future__ import annotations

import re
from datetime import datetime
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


ISO = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?)?$")
_parse_with_dateutil = FP_DateTime._getDateTimeObject


def datetime_object(self: FP_DateTime) -> Any:
    """FP_DateTime._getDateTimeObject, with fromisoformat for the plain ISO forms."""
    text = self.asStr
    if self._dateTimeMatchData and isinstance(text, str) and ISO.match(text):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:  # e.g. month 13: whatever dateutil makes of it
            pass
    return _parse_with_dateutil(self)  # type: ignore[no-untyped-call]


def apply() -> None:
    equality.typecheck = _typecheck_temporal
    FP_DateTime._getDateTimeObject = datetime_object  # type: ignore[method-assign]
