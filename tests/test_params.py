"""The HTTP parameter toolkit: one integer policy (refuse malformed or too small, clamp too large), dates, cursors."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta

import pytest

from service import params
from service.errors import BadRequest
from service.params import _DATE, MAX_KEY, _range, cursor, date_bound, date_range, integer, parse_integer, uncursor

# --- integers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("1", 1), ("20", 20), ("200", 200), ("007", 7), ("201", 200), ("5000", 200), ("9" * 30, 200),
    ("9" * 5000, 200), ("0" * 40 + "3", 3),
])
def test_integers_above_the_maximum_are_served_as_the_maximum(raw: str, expected: int) -> None:
    assert parse_integer("_count", raw, 1, 200) == expected


@pytest.mark.parametrize("raw", ["0", "00", "", "-1", "+1", " 1", "1 ", "1.0", "1e3", "²", "١", "abc", "0x10"])
def test_malformed_or_too_small_integers_are_400_naming_the_parameter(raw: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_integer("limit", raw, 1, 500)
    assert [i.field for i in raised.value.issues] == ["limit"]
    assert "limit" in raised.value.detail


def test_a_zero_minimum_takes_zero() -> None:
    assert parse_integer("_offset", "0", 0, 10) == 0


def test_an_absent_integer_is_the_default_and_a_present_one_is_parsed() -> None:
    assert integer({}, "_count", 20, 1, 200) == 20
    assert integer({"_count": "7"}, "_count", 20, 1, 200) == 7
    with pytest.raises(BadRequest):
        integer({"_count": ""}, "_count", 20, 1, 200)


# --- dates ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, low, high", [
    ("2026", datetime(2026, 1, 1), datetime(2026, 12, 31, 23, 59, 59, 999999)),
    ("2024-02", datetime(2024, 2, 1), datetime(2024, 2, 29, 23, 59, 59, 999999)),
    ("2026-12", datetime(2026, 12, 1), datetime(2026, 12, 31, 23, 59, 59, 999999)),
    ("2026-03-02", datetime(2026, 3, 2), datetime(2026, 3, 2, 23, 59, 59, 999999)),
    ("2026-03-02T09:00", datetime(2026, 3, 2, 9), datetime(2026, 3, 2, 9, 0, 59, 999999)),
    ("2026-03-02T09:00:00Z", datetime(2026, 3, 2, 9), datetime(2026, 3, 2, 9, 0, 0, 999999)),
    ("2026-03-02T09:00:00-05:00", datetime(2026, 3, 2, 14), datetime(2026, 3, 2, 14, 0, 0, 999999)),
    ("2026-03-02T01:30:00.25+02:00", datetime(2026, 3, 1, 23, 30, 0, 250000),
     datetime(2026, 3, 1, 23, 30, 0, 250000)),
    ("2026-02", datetime(2026, 2, 1), datetime(2026, 2, 28, 23, 59, 59, 999999)),
    ("2026-03-02T09:00:00.250Z", datetime(2026, 3, 2, 9, 0, 0, 250000), datetime(2026, 3, 2, 9, 0, 0, 250000)),
    ("2026-03-02T13:30+05:30", datetime(2026, 3, 2, 8), datetime(2026, 3, 2, 8, 0, 59, 999999)),
    ("9999", datetime(9999, 1, 1), datetime.max),
    ("9999-12", datetime(9999, 12, 1), datetime.max),
    ("2026-03-02T00:30:00+14:00", datetime(2026, 3, 1, 10, 30), datetime(2026, 3, 1, 10, 30, 0, 999999)),
    ("2026-03-01T23:15-10:45", datetime(2026, 3, 2, 10), datetime(2026, 3, 2, 10, 0, 59, 999999)),
    ("9999-12-31T23:59:59.5Z", datetime(9999, 12, 31, 23, 59, 59, 500000), datetime(9999, 12, 31, 23, 59, 59, 500000)),
])
def test_fhir_dates_cover_their_whole_precision_in_naive_utc(text: str, low: datetime, high: datetime) -> None:
    assert date_range(text) == (low, high)


@pytest.mark.parametrize("text", ["", "26", "26-03-02", "yesterday", "2026-2", "2026-02-30", "2026-13", "2026-13-01",
                                  "2026-03-02T25:00",
                                  "2026-03-02 09:00", "03/02/2026", "2026-03-02T09:00:00+0100",
                                  "9999-12-31T23:00:00-05:00", "0000",
                                  # its end, a second (a minute) on less a tick, is past year 9999 on the way there
                                  "9999-12-31T23:59:59Z", "9999-12-31T23:59Z"])
def test_other_texts_are_no_fhir_date(text: str) -> None:
    assert date_range(text) is None


def _by_pattern(text: str) -> tuple[datetime, datetime] | None:
    """date_range as the pattern alone reads a text (the way every form but the zoned one takes)."""
    match = _DATE.match(text)
    try:
        return None if match is None else _range(*match.groups())
    except (ValueError, OverflowError):
        return None


@pytest.mark.parametrize("day", ["2026-03-05", "2024-02-29", "2026-02-29", "2026-04-31", "0001-01-01", "9999-12-31",
                                 "2026-13-01", "2026-00-10"])
@pytest.mark.parametrize("clock", ["09:00:00", "00:00:00", "23:59:59", "24:00:00", "23:59:60", "09:60:00"])
@pytest.mark.parametrize("zone", ["-05:00", "+00:00", "-00:00", "+14:00", "+23:59", "-23:59", "+24:00", "-24:00",
                                  "+05:75", "+99:99"])
def test_the_zoned_form_read_by_fromisoformat_is_read_as_the_pattern_reads_it(day: str, clock: str, zone: str) -> None:
    text = f"{day}T{clock}{zone}"
    assert date_range(text) == _by_pattern(text)


@pytest.mark.parametrize("text", ["2026-03-05 09:00:00-05:00", "2026-03-05t09:00:00-05:00", "2026-W10-4T09:00:00-05:00",
                                  "٢٠٢٦-03-05T09:00:00-05:00", "2026-03-05T09:00:00-0٥:00", "2026-03-05T09:00:00-05:00\n"])
def test_texts_of_its_length_and_separators_that_fromisoformat_reads_otherwise_are_read_by_the_pattern(text: str) -> None:
    assert date_range(text) == _by_pattern(text)


class _ReadsHour24(datetime):
    """datetime whose fromisoformat reads hour 24 as the next day's midnight, as Python 3.14's does (gh-102450)."""

    @classmethod
    def fromisoformat(cls, text: str) -> datetime:
        if text[11:13] == "24":
            return datetime.fromisoformat(text[:11] + "00" + text[13:]) + timedelta(days=1)
        return datetime.fromisoformat(text)


def test_hour_24_is_refused_whatever_fromisoformat_makes_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pattern refuses `T24:00:00` (FHIR's time is 00-23), so the zoned form does too, on a Python whose
    fromisoformat reads it (3.14); the same instant with another spelling is read."""
    monkeypatch.setattr(params, "datetime", _ReadsHour24)
    assert date_range("2026-03-05T24:00:00+00:00") is None
    assert date_range("2026-03-06T00:00:00+00:00") is not None


@pytest.mark.parametrize("raw, end, expected", [
    ("2026-03-02", False, datetime(2026, 3, 2)),
    ("2026-03-02", True, datetime(2026, 3, 3)),  # the whole day is in
    ("2026-03-02T10:00:00+01:00", False, datetime(2026, 3, 2, 9)),
    ("2026-03-02T10:00:00+01:00", True, datetime(2026, 3, 2, 9, 0, 0, 1)),  # that instant, not its second
    ("2026-03-02T10:00:00 01:00", True, datetime(2026, 3, 2, 9, 0, 0, 1)),  # an unencoded '+'
    ("2026-03", True, datetime(2026, 4, 1)),
    ("9999-12-31", True, datetime.max),
])
def test_date_bounds_are_half_open_in_naive_utc(raw: str, end: bool, expected: datetime) -> None:
    assert date_bound({"date_to": raw}, "date_to", end=end) == expected


@pytest.mark.parametrize("raw", ["2026-03-02T10:00:00", "2026-03-02T10:00", "03/02/2026", "yesterday", ""])
def test_a_date_bound_with_a_time_needs_its_offset(raw: str) -> None:
    with pytest.raises(BadRequest) as raised:
        date_bound({"since": raw}, "since", end=False)
    assert [i.field for i in raised.value.issues] == ["since"]


def test_an_absent_date_bound_is_none() -> None:
    assert date_bound({}, "since", end=True) is None


# --- cursors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", [0, 1, 41, MAX_KEY])
def test_a_cursor_gives_back_its_key(key: int) -> None:
    assert uncursor("cursor", cursor(key)) == key


def _encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("raw", ["", "%%%", "bm9wZQ", _encoded("pk:"), _encoded("pk:a"), _encoded("pk:-1"),
                                 _encoded("pk:²"), _encoded(f"pk:{MAX_KEY + 1}"), _encoded("pk:" + "9" * 5000),
                                 _encoded("7"), "\x00"])
def test_anything_but_our_cursor_is_400(raw: str) -> None:
    with pytest.raises(BadRequest) as raised:
        uncursor("cursor", raw)
    assert [i.field for i in raised.value.issues] == ["cursor"]
