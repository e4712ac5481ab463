"""HTTP parameter toolkit: integers, dates and instants, and opaque cursors; a bad value is a 400 naming it.

Integers follow one policy, the one FHIR gives `_count` and HAPI FHIR applies to every page size: malformed
(not ASCII digits) or below the parameter's minimum is refused (400); above its maximum is served as the maximum.
FHIR R4 search.html#count: the server "is not bound to return the number requested, but cannot return more", and
HAPI's paging provider reduces a larger `_count` to its maximum page size instead of refusing it. The domain
API's `limit` is a page size too, and offsets take the same rule: what was served is what the answer's links
(`self`, `next`) and counts say, so a clamped request is never mistaken for the one asked.

A bottom layer: it imports the standard library and service.errors only.
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlsplit

from service.errors import BadRequest, Issue

#: Keys of ours are INTEGER columns: a larger number names no row (and PostgreSQL refuses to compare it).
MAX_KEY = 2**31 - 1
#: Open ends of a date range.
EARLIEST = datetime(1, 1, 1)
LATEST = datetime(9999, 12, 31, 23, 59, 59)
_TICK = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)
_MINUTE = timedelta(minutes=1)


def bad(name: str, message: str) -> BadRequest:
    """A 400 about one parameter: the message is both the detail and the parameter's issue."""
    return BadRequest(message, [Issue(name, message)])


# --- integers ------------------------------------------------------------------------------------


def integer(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """Parameter `name` of `args` as an integer (see the module's policy), or `default` when it is absent."""
    raw = args.get(name)
    return default if raw is None else parse_integer(name, raw, low, high)


def parse_integer(name: str, raw: str, low: int, high: int) -> int:
    """`raw` as an integer from `low`: below it or not a plain number, 400; above `high`, `high`."""
    # isdigit() alone lets '²' through, which int() refuses; '+1', '-1' and ' 1' are not plain numbers either
    if not (raw.isascii() and raw.isdigit()):
        raise bad(name, f"{name} must be an integer ≥ {low}, not {raw!r}.")
    digits = raw.lstrip("0") or "0"
    if len(digits) > len(str(high)):  # clearly above: int() of thousands of digits would raise (and be slow)
        return high
    value = int(digits)
    if value < low:
        raise bad(name, f"{name} must be an integer ≥ {low}, not {raw!r}.")
    return min(value, high)


# --- dates and instants --------------------------------------------------------------------------

#: FHIR date, dateTime and instant (datatypes.html): YYYY, YYYY-MM, YYYY-MM-DD, or a time with an optional zone
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def date_range(text: str) -> tuple[datetime, datetime] | None:
    """`2026`, `2026-03`, `2026-03-02`, `2026-03-02T09:00:00-05:00`: the first and last instant it covers,
    in naive UTC (a time without a zone is taken as UTC); None when `text` is none of these."""
    try:
        if len(text) == 25 and text[4:23:3] in _ZONED:
            moment = _zoned(text)
            if moment is not None:
                return moment, moment + _SECOND - _TICK
        match = _DATE.match(text)
        return None if match is None else _range(*match.groups())
    except (ValueError, OverflowError):  # 2026-02-30, or past the year 9999 once in UTC
        return None


#: the separators of the form a clinic record's every dateTime takes, seconds and a zone offset
#: (`2026-03-05T09:00:00-05:00`), at characters 4, 7, 10, 13, 16, 19 and 22
_ZONED = ("--T::+:", "--T::-:")


def _zoned(text: str) -> datetime | None:
    """That form in naive UTC, read by datetime.fromisoformat (C), which checks that the rest are ASCII digits: the
    pattern and _range took ~30 K instructions a text, ~10 a clinic record's index. None for what it refuses (an
    offset of 24 hours or more, a day past the month's end, other digits than ASCII's, and hour 24, which Python 3.14's
    fromisoformat reads as the next midnight): the pattern reads those."""
    if text[11:13] == "24":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _EPOCH + (moment - _UTC_EPOCH)  # replace(tzinfo=None) parsed its keywords: ~9 K instructions


_EPOCH = datetime(1970, 1, 1)
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _range(year: str, month: str | None, day: str | None, hour: str | None, minute: str | None,
           second: str | None, fraction: str | None, zone: str | None) -> tuple[datetime, datetime]:
    if hour is None or minute is None or month is None or day is None:
        first = date(int(year), int(month or 1), int(day or 1))
        if day:
            last = first
        elif month:  # the day before the next month's first (December: the 31st, without leaving year 9999)
            last = first.replace(day=31) if first.month == 12 else first.replace(month=first.month + 1) - timedelta(1)
        else:
            last = first.replace(month=12, day=31)
        return datetime.combine(first, time.min), datetime.combine(last, time.max)
    # timedeltas made without keywords, or made once: their keyword parsing was most of a dateTime's cost (~10
    # dateTimes a clinic record's index reads); the sums as before, so a moment past year 9999 overflows as it did
    micro = 0 if fraction is None else int(fraction[:6].ljust(6, "0"))
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro)
    if zone and zone != "Z":
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        moment -= timedelta(0, offset if zone[0] == "+" else -offset)
    if second is None:
        return moment, moment + _MINUTE - _TICK
    if fraction is None:
        return moment, moment + _SECOND - _TICK
    return moment, moment


def date_bound(args: Mapping[str, str], name: str, *, end: bool) -> datetime | None:
    """A bound of a half-open period in naive UTC: a date covers its whole day, month or year, a date with a
    time (which must name its UTC offset) is that instant. `end`: the first instant after it. None if absent."""
    raw = args.get(name)
    if raw is None:
        return None
    text = raw.replace(" ", "+")  # a '+' in a query string that was not percent-encoded arrives as a space
    match, found = _DATE.match(text), date_range(text)
    timed = match is not None and match.group(4) is not None
    if match is None or found is None or (timed and match.group(8) is None):
        raise BadRequest(f"{name} must be YYYY-MM-DD or an ISO 8601 datetime with a UTC offset.",
                         [Issue(name, f"got {raw!r}")])
    low, high = found
    if not end:
        return low
    last = low if timed else high
    return last + _TICK if last < datetime.max else last


# --- cursors -------------------------------------------------------------------------------------


def cursor(key: int) -> str:
    """An opaque cursor for 'the rows after this key' (clients follow links; they do not build cursors)."""
    return base64.urlsafe_b64encode(f"pk:{key}".encode()).decode().rstrip("=")


def uncursor(name: str, raw: str) -> int:
    """The key of a cursor `cursor` made; 400 for anything else."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    number = text.removeprefix("pk:")
    if text.startswith("pk:") and number.isascii() and number.isdigit() and len(number) <= 10 \
            and int(number) <= MAX_KEY:
        return int(number)
    raise BadRequest(f"{name} is not one this API issued; follow the `next` link.", [Issue(name, "invalid")])


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) as RFC 6454 compares them, the default port made explicit: what an outbound client
    pins its requests to (a link or redirect to another origin is not followed with our credentials)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: no origin anything else has
        return scheme, (parts.hostname or "").lower(), -1
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)
