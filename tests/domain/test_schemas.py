"""The record schemas accept DOMAIN.md's records and reject everything else, naming the field."""
from __future__ import annotations

import json
from typing import Any

import pytest
from factories import FACTORIES, administration, adverse_event, assessment, esketamine_session, treatment_plan, with_
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mapping.strategies import RECORDS
from marshmallow import ValidationError
from marshmallow.utils import get_value

from service.domain.kinds import KINDS, schema_of
from service.domain.schemas import Strict, dumped, flatten_errors


def errors_of(kind: str, record: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        KINDS[kind].schema().load(record)
    return dict(flatten_errors(info.value.messages))


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_minimal_records_load(kind: str) -> None:
    loaded = KINDS[kind].schema().load(FACTORIES[kind]())
    assert loaded["external_id"]


def test_source_defaults_to_default() -> None:
    assert KINDS["assessment"].schema().load(assessment(source=None))["source"] == "default"


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_unknown_top_level_field_is_named(kind: str) -> None:
    assert errors_of(kind, with_(FACTORIES[kind](), dose_in_grams=1)) == {"dose_in_grams": "Unknown field."}


def test_unknown_nested_field_is_named_with_its_path() -> None:
    record = esketamine_session(vitals=[{"at": "2026-03-02T08:50:00Z", "phase": "pre", "temp": 37}])
    assert errors_of("administration", record) == {"vitals[0].temp": "Unknown field."}


@pytest.mark.parametrize("value", ["2026-03-02T09:00:00", "2026-03-02", "yesterday"])
def test_datetimes_without_offset_are_rejected(value: str) -> None:
    assert "started_at" in errors_of("administration", administration(started_at=value))


@pytest.mark.parametrize("value", ["2026-03-02T09:00:00Z", "2026-03-02T09:00:00+05:30", "2026-03-02T09:00:00.5-05:00"])
def test_datetimes_with_offset_are_accepted(value: str) -> None:
    assert KINDS["administration"].schema().load(administration(started_at=value, ended_at=None))


@pytest.mark.parametrize("field, value", [
    ("dose_mg", "35"), ("dose_mg", True), ("dose_mg", 0), ("dose_mg", -5), ("weight_kg", [70]),
    ("session_number", 1.5), ("session_number", "1"), ("session_number", 0),
    ("discharged_with_escort", "yes"), ("discharged_with_escort", 1),
    ("status", "done"), ("route", "IV"), ("medication", "Ketamine"), ("external_id", ""),
    ("external_id", " adm-1"), ("external_id", 12),
])
def test_wrong_types_and_values_are_rejected(field: str, value: Any) -> None:
    assert field in errors_of("administration", administration(**{field: value}))


@pytest.mark.parametrize("kind, field", [
    ("treatment-plan", "status"), ("treatment-plan", "indication"), ("treatment-plan", "dose"),
    ("administration", "started_at"), ("administration", "status"), ("adverse-event", "onset_at"),
    ("adverse-event", "term"), ("adverse-event", "serious"), ("assessment", "score"), ("assessment", "at"),
])
def test_required_fields(kind: str, field: str) -> None:
    record = FACTORIES[kind]()
    del record[field]
    assert errors_of(kind, record) == {field: "Missing data for required field."}


def test_patient_identifier_is_required() -> None:
    record = assessment(patient={"name": {"family": "X"}})
    assert errors_of("assessment", record) == {"patient.identifier": "Missing data for required field."}


@pytest.mark.parametrize("unit", ["mg/kg", "mg"])
def test_dose_units_are_explicit_ucum(unit: str) -> None:
    assert KINDS["treatment-plan"].schema().load(treatment_plan(dose={"value": 1, "unit": unit}))


@pytest.mark.parametrize("unit", ["milligram", "MG", "g", ""])
def test_other_dose_units_are_rejected(unit: str) -> None:
    assert "dose.unit" in errors_of("treatment-plan", treatment_plan(dose={"value": 1, "unit": unit}))


def test_interacting_medication_class_uses_the_json_name_class() -> None:
    screening = {"interacting_medications": [{"name": "lorazepam", "class": "benzodiazepine"}]}
    loaded = KINDS["treatment-plan"].schema().load(treatment_plan(screening=screening))
    assert KINDS["treatment-plan"].schema().dump(loaded)["screening"] == screening


def test_icd10_must_look_like_icd10_cm() -> None:
    assert KINDS["treatment-plan"].schema().load(treatment_plan(indication={"code": "trd", "icd10": "F33.2"}))
    assert "indication.icd10" in errors_of("treatment-plan", treatment_plan(indication={"code": "trd", "icd10": "depression"}))


def test_seriousness_criteria_are_a_closed_list() -> None:
    record = adverse_event(serious=True, seriousness_criteria=["hospitalization", "bad-day"])
    assert errors_of("adverse-event", record) == {"seriousness_criteria[1]": "Must be one of: death, life-threatening, "
                                                  "hospitalization, disability, congenital-anomaly, important-medical-event."}


def test_every_error_is_reported_at_once() -> None:
    errors = errors_of("assessment", assessment(score="high", at="now", instrument="beck"))
    assert set(errors) == {"score", "at", "instrument"}


def test_flatten_errors_paths() -> None:
    messages = {"a": ["x"], "b": {0: {"c": ["y"]}}, "_schema": ["z"]}
    assert flatten_errors(messages) == [("a", "x"), ("b[0].c", "y"), ("$", "z")]


def test_a_dumped_dict_s_fields_are_read_as_marshmallow_reads_them() -> None:
    """Strict.get_attribute skips the failing getattr for a field a dict lacks: it gives what get_value gives, a dict
    method for a field that names one, and reads dotted names and other objects through marshmallow."""
    schema, default = Strict(), object()
    nested = {"a": {"b": 1}, "items": 2, "none": None, "falsy": 0}
    for obj in (nested, {}, [1, 2], "text"):
        for attr in ("a", "a.b", "items", "values", "none", "falsy", "missing", "__class__", "get"):
            assert schema.get_attribute(obj, attr, default) == get_value(obj, attr, default), (obj, attr)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(RECORDS)).flatmap(lambda kind: st.tuples(st.just(kind), RECORDS[kind]())))
def test_dumped_is_what_marshmallow_dumps(drawn: tuple[str, dict[str, Any]]) -> None:
    """intake's dump of a loaded record without marshmallow's per-field calls: the same values, of the same types,
    in the same order (the stored content and its hash depend on it)."""
    kind, record = drawn
    schema = schema_of(kind)
    loaded = schema.load(record)
    assert json.dumps(dumped(schema, loaded)) == json.dumps(schema.dump(loaded))


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_dumped_keeps_nulls_and_renamed_keys_as_marshmallow_does(kind: str) -> None:
    schema = schema_of(kind)
    loaded = schema.load(FACTORIES[kind]())
    loaded |= {"patient": {**loaded["patient"], "name": None}, "extra": 1}  # a null Nested; a key no field has
    if kind == "administration":
        loaded["concomitant_medications"] = [{"name": "x", "class_": "maoi"}, None]  # `class` by its data_key
    assert json.dumps(dumped(schema, loaded)) == json.dumps(schema.dump(loaded))


@pytest.mark.parametrize("value", [True, 1, 2.5, 3.0, "7", None])
def test_dumped_gives_back_only_the_values_a_field_would(value: Any) -> None:
    """A scalar is dumped as it is only when its field's _serialize would give it back so: an int in a number
    field becomes a float, a bool or a float in an integer field an int, as marshmallow makes them."""
    schema = schema_of("administration")
    loaded = schema.load(administration())
    loaded |= {"dose_mg": value, "session_number": value, "discharged_with_escort": value, "lot_number": value}
    assert repr(dumped(schema, loaded)) == repr(schema.dump(loaded))
