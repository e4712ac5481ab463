"""schema.load for the record schemas, fast for a valid record: `loaded`.

marshmallow's load of a session costs ~1.2 M instructions of a record POST's ~31 M: for each field a getter, an
error store, Field.deserialize with its missing and null checks, an And of the validators, and for each Nested
a whole Schema.load again. `loaded` reads the same fields from a plan made once per schema: each field's value
checked as its field class and validators check it, made as they make it (an instant parsed as the field parses
it). Anything the plan does not fully handle (a value that is not exactly valid: a wrong type, a value a validator
refuses, a missing required field, an unknown one) is loaded again by marshmallow from the start, so an invalid
record gets marshmallow's own error messages, every one of them. A schema or field the plan does not know (hooks,
partial loads, other field classes, pre/post-load functions) goes through marshmallow, or through the field's own
deserialize.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, missing, validate

from service.domain.fields import StrictBoolean, StrictNumber, Text


class _Unhandled(Exception):
    """The plan cannot say what marshmallow makes of this value: marshmallow loads the record."""


_ABSENT = object()
_SIZED = (str, list)
#: (value, attr, data) -> what the field's deserialize returns, or _Unhandled
_Read = Callable[[Any, Any, Any], Any]


def loaded(schema: Schema, payload: Any) -> Any:
    """schema.load(payload): the same value, or the same ValidationError (marshmallow's own)."""
    plan = _plan(schema)
    if plan is not None and type(payload) is dict:
        try:
            return plan(payload)
        except _Unhandled:
            pass
    return schema.load(payload)


#: by schema (held beside its id, which a freed schema's successor may reuse): its plan, or None for marshmallow
_PLANS: dict[int, tuple[Schema, Callable[[dict[str, Any]], dict[str, Any]] | None]] = {}


def _plan(schema: Schema) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    held = _PLANS.get(id(schema))
    if held is None or held[0] is not schema:
        held = _PLANS[id(schema)] = (schema, _schema_reader(schema))
    return held[1]


def _schema_reader(schema: Schema) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """Schema._deserialize of a dict, as it runs for a schema without hooks, partial loads or nesting `many`, of
    unknown=RAISE: each load field's value read (its load default where absent), no key beyond them."""
    kind = type(schema)
    if (schema.many or schema.partial is not None or schema.unknown != RAISE or any(schema._hooks.values())
            or kind.load is not Schema.load or kind._do_load is not Schema._do_load
            or kind._deserialize is not Schema._deserialize
            or kind._invoke_field_validators is not Schema._invoke_field_validators):
        return None
    entries: list[tuple[str, str, _Read, bool, Any]] = []
    for attr_name, field in schema.load_fields.items():
        key = field.data_key if field.data_key is not None else attr_name
        name = field.attribute or attr_name
        read = _reader(field)
        if "." in name or read is None:
            return None
        default = field.load_default
        entries.append((key, name, read, field.required, default))
    if len({key for key, *_ in entries}) != len(entries) or len({name for _, name, *_ in entries}) != len(entries):
        return None  # two fields of one key: `seen` would not count the data's keys

    def load(data: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen = 0
        for key, name, read, required, default in entries:
            value = data.get(key, _ABSENT)
            if value is _ABSENT:
                if required:
                    raise _Unhandled
                if default is not missing:
                    out[name] = default() if callable(default) else default
                continue
            seen += 1
            out[name] = read(value, key, data)
        if seen != len(data):  # a key no field reads: unknown (RAISE)
            raise _Unhandled
        return out
    return load


def _reader(field: fields.Field[Any]) -> _Read | None:
    """Field.deserialize of a present value (None included): exactly for the field classes known here, else the
    field's own deserialize, a ValidationError from it _Unhandled."""
    kind = type(field)
    if field.pre_load or field.post_load:
        return _deserializer(field)
    valid = _validators(field)
    allow_none = field.allow_none
    made: Callable[[Any], Any]
    if kind is Text or kind is fields.String:
        strip = kind is Text  # Text: no leading or trailing whitespace

        def made(value: Any) -> Any:
            if type(value) is not str or (strip and value != value.strip()):
                raise _Unhandled
            return value
    elif kind is fields.Integer:
        def made(value: Any) -> Any:
            if type(value) is not int:  # int(value) is value; a bool is not taken here
                raise _Unhandled
            return value
    elif (kind is StrictNumber or kind is fields.Float) and field.allow_nan is False:  # type: ignore[attr-defined]
        def made(value: Any) -> Any:
            if type(value) is float:
                if math.isnan(value) or math.isinf(value):
                    raise _Unhandled
                return value
            if type(value) is int:
                try:
                    return float(value)
                except OverflowError:
                    raise _Unhandled from None
            raise _Unhandled
    elif (kind is fields.AwareDateTime and field.default_timezone is None  # type: ignore[attr-defined]
          or kind is fields.Date) and kind.DESERIALIZATION_FUNCS.get(field.format) is not None:  # type: ignore[attr-defined]
        # _TemporalField._deserialize of a string (its format bound by then): the format's parse; of an
        # AwareDateTime, aware (utils.is_aware)
        parse: Callable[[str], Any] = kind.DESERIALIZATION_FUNCS[field.format]  # type: ignore[attr-defined]
        aware = kind is fields.AwareDateTime

        def made(value: Any) -> Any:
            if type(value) is not str:
                raise _Unhandled
            try:
                out = parse(value)
            except (TypeError, AttributeError, ValueError):
                raise _Unhandled from None
            if aware and (out.tzinfo is None or out.tzinfo.utcoffset(out) is None):
                raise _Unhandled
            return out
    elif kind is StrictBoolean:
        def made(value: Any) -> Any:
            if type(value) is not bool:
                raise _Unhandled
            return value
    elif kind is fields.Nested and not field.many and field.unknown is None:  # type: ignore[attr-defined]
        nested = field.schema  # type: ignore[attr-defined]
        inner_load = _schema_reader(nested) if not nested.many else None
        if inner_load is None:
            return _deserializer(field)
        load = inner_load

        def made(value: Any) -> Any:
            if type(value) is not dict:
                raise _Unhandled
            return load(value)
    elif kind is fields.List:
        inner = _reader(field.inner)  # type: ignore[attr-defined]
        if inner is None:
            return None
        item = inner

        def made(value: Any) -> Any:
            if type(value) is not list:
                raise _Unhandled
            return [item(each, None, None) for each in value]  # List deserializes each item without attr or data
    else:
        return _deserializer(field)

    def read(value: Any, attr: Any, data: Any) -> Any:
        if value is None:
            if allow_none:
                return None
            raise _Unhandled
        out = made(value)
        if valid is not None and not valid(out):
            raise _Unhandled
        return out
    return read


def _deserializer(field: fields.Field[Any]) -> _Read:
    def read(value: Any, attr: Any, data: Any) -> Any:
        try:
            return field.deserialize(value, attr, data)
        except ValidationError:
            raise _Unhandled from None
    return read


def _validators(field: fields.Field[Any]) -> Callable[[Any], bool] | None:
    """Whether a made value passes every validator of the field (Field._validate raising nothing); None: none."""
    checks = [_passes(v) for v in field.validators]
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda value: all(check(value) for check in checks)


def _passes(validator: Any) -> Callable[[Any], bool]:
    """A validator as a test: the four the schemas use read as their __call__ does; any other called. A test may
    say False where the validator would pass (marshmallow then loads), never True where it would fail."""
    kind = type(validator)
    if kind is validate.Length:
        low, high, equal = validator.min, validator.max, validator.equal
        if equal is not None:
            return lambda value: type(value) in _SIZED and len(value) == equal
        return lambda value: type(value) in _SIZED and (low is None or len(value) >= low) and (
            high is None or len(value) <= high)
    if kind is validate.OneOf and all(type(c) is str for c in validator.choices):
        choices = frozenset(validator.choices)
        return lambda value: type(value) is str and value in choices
    if kind is validate.Range:
        low, high, low_in, high_in = validator.min, validator.max, validator.min_inclusive, validator.max_inclusive

        def within(value: Any) -> bool:
            if type(value) is not int and type(value) is not float:
                return False
            if low is not None and (value < low if low_in else value <= low):
                return False
            return not (high is not None and (value > high if high_in else value >= high))
        return within
    if kind is validate.Regexp:
        match = validator.regex.match
        return lambda value: type(value) is str and match(value) is not None

    def called(value: Any) -> bool:
        try:
            validator(value)
        except ValidationError:
            return False
        return True
    return called
