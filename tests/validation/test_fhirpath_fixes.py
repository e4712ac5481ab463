"""fhirpath_fixes: temporal element values compare as instants, whatever their UTC offsets."""
from __future__ import annotations

import json
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.engine.nodes import FP_DateTime
from fhirpathpy.models import models
from hypothesis import given, settings
from hypothesis import strategies as st

from service.resources import profiles_dir
from service.validation import default_validator, fhirpath_fixes, invariants  # noqa: F401 - importing applies the fix

R4 = models["r4"]


def period(start: str, end: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "period": {"start": start, "end": end}}


@pytest.mark.parametrize("start, end, ordered", [
    ("2026-01-01T13:30:00+05:30", "2026-01-01T08:05:00+00:00", True),   # 08:00Z before 08:05Z
    ("2026-01-01T13:30:00+05:30", "2026-01-01T07:59:00+00:00", False),  # 08:00Z after 07:59Z
    ("2026-01-01T09:00:00-05:00", "2026-01-01T14:00:00Z", True),        # the same instant
    ("2026-01-01", "2026-01-02", True),
])
def test_element_datetimes_compare_as_instants(start: str, end: str, ordered: bool) -> None:
    assert fhirpathpy.evaluate(period(start, end), "period.start <= period.end", {}, R4) == [ordered]


def test_a_session_across_offsets_is_valid_and_a_reversed_one_is_not() -> None:
    administration = json.loads((profiles_dir() / "examples" / "MedicationAdministration-iv-session-1.json")
                                .read_text(encoding="utf-8"))
    administration["effectivePeriod"] = {"start": "2026-03-02T19:35:00+05:30", "end": "2026-03-02T09:45:00-05:00"}
    findings = default_validator().validate(administration)
    assert not [f for f in findings if f.severity == "error"]
    administration["effectivePeriod"]["end"] = "2026-03-02T08:59:00-05:00"
    errors = {f.message.split(":")[1].strip() for f in default_validator().validate(administration)
              if f.severity == "error"}
    assert {"per-1", "ket-4"} <= errors


DATES = st.builds(lambda y, mo, d: f"{y:04d}-{mo:02d}-{d:02d}", st.integers(1900, 2100), st.integers(1, 12),
                  st.integers(1, 28))
TIMES = st.builds(lambda h, mi, s, frac, tz: f"T{h:02d}:{mi:02d}:{s:02d}{frac}{tz}", st.integers(0, 23),
                  st.integers(0, 59), st.integers(0, 59), st.sampled_from(["", ".5", ".12", ".123", ".123456"]),
                  st.sampled_from(["", "Z", "+00:00", "-05:00", "+05:30", "+14:00", "-12:00"]))


@settings(max_examples=300, deadline=None)
@given(date=DATES, time=st.one_of(st.just(""), TIMES))
def test_iso_datetimes_parse_to_the_instant_dateutil_gives(date: str, time: str) -> None:
    value = FP_DateTime(date + time)
    fast, slow = fhirpath_fixes.datetime_object(value), fhirpath_fixes._parse_with_dateutil(value)
    assert fast == slow and fast.timestamp() == slow.timestamp() and fast.utcoffset() == slow.utcoffset()


def test_text_outside_the_iso_forms_still_goes_to_dateutil() -> None:
    assert fhirpath_fixes.ISO.match("2026-01-01T10:00:00.1234567Z") is None
    assert fhirpath_fixes.ISO.match("2026-01") is None
    assert fhirpath_fixes.ISO.match("2026-01-01T10:00:00.123+05:30") is not None
