"""Strict marshmallow fields: JSON types are taken as sent, never coerced from strings."""
from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields, validate


class StrictNumber(fields.Float):
    """A JSON number (int or float); strings, booleans, NaN and infinities are rejected."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError("Not a valid number.")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON true/false; "yes", 1 and "true" are rejected."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("Not a valid boolean (true or false).")
        return value


class Text(fields.String):
    """A non-empty string without leading or trailing whitespace, at most `max_length` characters."""

    def __init__(self, max_length: int = 200, **kwargs: Any) -> None:
        super().__init__(validate=validate.Length(min=1, max=max_length), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if text != text.strip():
            raise ValidationError("Must not start or end with whitespace.")
        return text


LOCAL_CODE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def local_code(**kwargs: Any) -> fields.String:
    """A clinic-side code: lower case, digits and single hyphens (../shared/design/DOMAIN.md)."""
    code = validate.Regexp(LOCAL_CODE, error="Must be a lower-case hyphenated code.")
    return fields.String(validate=[validate.Length(max=100), code], **kwargs)


def one_of(choices: tuple[str, ...], **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(choices), **kwargs)


def integer(minimum: int | None = None, maximum: int | None = None, **kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=minimum, max=maximum), **kwargs)


#: the largest value of FHIR R4's integer, positiveInt and unsignedInt (datatypes.html#primitive: a 32-bit signed
#: integer; positiveInt 1.., unsignedInt 0..): a field mapped to one of them is bounded here, so a value the FHIR form
#: cannot carry is refused at the record's own field, not by the validator after mapping
FHIR_INT_MAX = 2_147_483_647


def positive_int(**kwargs: Any) -> fields.Integer:
    """A count mapped to a FHIR positiveInt."""
    return integer(1, FHIR_INT_MAX, **kwargs)


def unsigned_int(**kwargs: Any) -> fields.Integer:
    """A count mapped to a FHIR unsignedInt, or to an integer that is never negative."""
    return integer(0, FHIR_INT_MAX, **kwargs)


def positive(**kwargs: Any) -> StrictNumber:
    return StrictNumber(validate=validate.Range(min=0, min_inclusive=False), **kwargs)


def instant(**kwargs: Any) -> fields.AwareDateTime:
    """An ISO 8601 datetime that must carry its UTC offset (DOMAIN.md: no offset, no record)."""
    return fields.AwareDateTime(error_messages={
        "invalid": "Not a valid ISO 8601 datetime.",
        "invalid_awareness": "The datetime needs a UTC offset, like 2026-03-02T09:00:00-05:00 or ...Z.",
    }, **kwargs)
