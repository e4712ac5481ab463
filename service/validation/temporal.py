"""FHIRPath ordering of two date, dateTime or instant texts, as fhirpathpy 2.2.4 (with fhirpath_fixes) has it.

fhirpathpy (FP_TimeBase.compare and equality.lt/lte/gt/gte) moves each value to UTC by its offset and compares the
precisions both have, year to second: a difference there decides, and when there is none and one value is more
precise the answer is empty (FHIRPath N1 §6.2: `@2018-03 < @2018-03-01` is empty). Two values of the same precision
compare as instants, a value without an offset in the local time zone (datetime.timestamp()). That costs ~50 µs a
comparison through FP_DateTime; per-1, ket-4 and ket-11 order every Period. Any text not of FHIR's forms (hours
without seconds, more than six fraction digits, a trailing newline, a day that does not exist) raises NotPlain, and
fhirpathpy answers. tests/validation/test_native_invariants.py compares the two."""
from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from service.validation.plain import NotPlain

#: year, month, day, hour, minute, second, fraction, offset: the groups of fhirpathpy's dateTimeRE, in FHIR's forms
FORM = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})?)?)?)?")
#: seconds a year and a month count for in fhirpathpy's value of a year or a year-month (_getDateTimeInt)
SCALE = (365 * 12 * 24 * 60 * 60, 12 * 24 * 60 * 60)
ORDER: dict[str, Callable[[int, int], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                ">=": operator.ge}
Parts = tuple[str | None, ...]


def order(op: str, first: str, second: str) -> bool | None:
    """`first op second` (op one of <, <=, >, >=): True, False, or None for FHIRPath's empty."""
    a, b = _parts(first), _parts(second)
    try:
        compared = _compare(first, a, second, b)
    except (ValueError, OverflowError, OSError):  # no such day, or beyond datetime's years: fhirpathpy fails too
        raise NotPlain("date") from None
    if compared is None:
        if _precision(a) == _precision(b):
            raise NotPlain("unordered")  # fhirpathpy's `None <= 0` fails
        return None
    return ORDER[op](compared, 0)


def _parts(text: str) -> Parts:
    found = FORM.fullmatch(text)
    if found is None:
        raise NotPlain(text)
    return found.groups()


def _precision(parts: Parts) -> int:
    """FP_TimeBase._calculatePrecision: the parts present, an offset other than Z not counted."""
    return sum(1 for p in parts if p is not None and "+" not in p and "-" not in p)


def _two(number: int) -> str:
    return "0" + str(number) if 0 < number < 10 else str(number)


def _in_utc(parts: Parts) -> list[str | None]:
    """FP_TimeBase._normalize_datetime: year to second moved to UTC by the offset, each as fhirpathpy writes it."""
    year, month, day, hour, minute, second = (int(p) if p else None for p in parts[:6])
    moved = datetime(year or 2023, month or 1, day or 1, hour or 0, minute or 0, second or 0)
    zone = parts[7]
    if zone and zone != "Z":
        hours, minutes = map(int, zone[1:].split(":"))
        delta = timedelta(hours=hours, minutes=minutes)
        moved = moved - delta if zone.startswith("+") else moved + delta
    fields = (moved.year, moved.month, moved.day, moved.hour, moved.minute, moved.second)
    return [_two(f) if given is not None else None for f, given in zip(fields, (year, month, day, hour, minute, second),
                                                                        strict=True)]


def _compare(first: str, a: Parts, second: str, b: Parts) -> int | None:
    """FP_TimeBase.compare: -1, 0 or 1, or None when the values agree up to a precision only one has."""
    x, y = _in_utc(a), _in_utc(b)
    kept = [i for i in range(6) if x[i] is not None or y[i] is not None]
    x, y = [x[i] for i in kept], [y[i] for i in kept]
    mine, theirs = sum(v is not None for v in x), sum(v is not None for v in y)
    if mine != theirs:
        for i in range(min(mine, theirs)):
            u, v = x[i], y[i]
            if u is None or v is None:
                return -1
            if u != v:
                return 1 if u > v else -1
        return None
    p, q = _instant(first, a), _instant(second, b)
    return -1 if p < q else 0 if p == q else 1


def _instant(text: str, parts: Parts) -> float:
    """FP_DateTime._getDateTimeInt: a value to the day or finer as a POSIX time, a year or a year-month as a count."""
    precision = _precision(parts)
    if precision >= 3:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return sum(int(parts[i] or 0) * SCALE[i] for i in range(precision))
