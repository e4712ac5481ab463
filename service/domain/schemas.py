"""Marshmallow schemas of the four record kinds, exactly as ../shared/design/DOMAIN.md names their fields."""
from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, missing, validate
from marshmallow.decorators import POST_DUMP, PRE_DUMP

from service.domain import vocabulary as v
from service.domain.fields import (
    StrictBoolean,
    StrictNumber,
    Text,
    instant,
    integer,
    local_code,
    one_of,
    positive,
    positive_int,
    unsigned_int,
)

ICD10_CM = r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$"
RXNORM = r"^[0-9]{1,10}$"


class Strict(Schema):
    """Unknown fields are an error naming the field (marshmallow: 'Unknown field.')."""

    class Meta:
        unknown = RAISE
        ordered = True

    def on_bind_field(self, field_name: str, field_obj: fields.Field[Any]) -> None:
        _validated_once(field_obj)

    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        """marshmallow's get_value (obj[attr], else getattr(obj, attr, default)), for a dict (what is dumped) without
        the getattr that fails for each field it lacks, raising and formatting an AttributeError (~2 µs each)."""
        if type(obj) is dict and "." not in attr:
            value = obj.get(attr, _ABSENT)
            if value is not _ABSENT:
                return value
            if attr not in _DICT_ATTRIBUTES:
                return default
        return super().get_attribute(obj, attr, default)


_ABSENT = object()
#: what getattr finds on a dict (its methods): get_value gives one for a field the dict lacks and that names it
_DICT_ATTRIBUTES = frozenset(dir(dict))


#: field classes whose _serialize gives a value of the type back as it is (these ones' _serialize is marshmallow's)
_KEPT: dict[type, type] = {fields.String: str, Text: str, fields.Integer: int, fields.Float: float, StrictNumber: float,
                           fields.Boolean: bool, StrictBoolean: bool}


def dumped(schema: Schema, obj: Any) -> Any:
    """schema.dump(obj), for a record as schema.load made it (dicts, and lists of them): what Schema.dump and
    Field.serialize do for it, each present field's value made by its own field's _serialize (a Nested's and a
    List's of Nested by this again), without marshmallow's call of serialize, get_value and get_attribute for every
    field a schema declares, present or not (~27 a session; 0.6 M instructions of a record POST's ~33 M), nor of
    _serialize for a scalar it would give back as it is (_KEPT). A schema
    this does not cover (dump hooks, a field with a dump default, an attribute, or a name a dict's method has) or a
    value not a dict goes through marshmallow."""
    plan = _dump_plan(schema)
    if plan is None or type(obj) is not dict:
        return schema.dump(obj)
    out = {}
    for attr, key, field, nested, each, kept in plan:
        value = obj.get(attr, _ABSENT)
        if value is _ABSENT:
            continue
        if nested is None or value is None:
            out[key] = value if value.__class__ is kept else field._serialize(value, attr, obj)
        elif each:
            out[key] = [None if item is None else dumped(nested, item) for item in value]
        else:
            out[key] = dumped(nested, value)
    return out


#: by schema: (attribute, key, field, the schema of a Nested or of a List's Nested, whether a List's, the type whose
#: values the field's _serialize gives back as they are) per dump field, or None where `dumped` uses marshmallow
_DUMP_PLANS: dict[int, tuple[Schema, Any]] = {}


def _dump_plan(schema: Schema) -> Any:
    held = _DUMP_PLANS.get(id(schema))
    if held is not None and held[0] is schema:
        return held[1]
    plan: list[tuple[str, str, fields.Field[Any], Schema | None, bool, type | None]] | None = []
    if schema.many or schema._hooks[PRE_DUMP] or schema._hooks[POST_DUMP]:
        plan = None
    for name, field in schema.dump_fields.items():
        if plan is None:
            break
        if (not field._CHECK_ATTRIBUTE or field.dump_default is not missing or field.attribute is not None
                or name in _DICT_ATTRIBUTES or "." in name):
            plan = None
            break
        inner = field.inner if isinstance(field, fields.List) else None
        target = inner if isinstance(inner, fields.Nested) else field if isinstance(field, fields.Nested) else None
        if target is not None and (target.many or target.schema.many):
            plan = None
            break
        plan.append((name, field.data_key if field.data_key is not None else name, field,
                     target.schema if target is not None else None, inner is not None, _kept(field)))
    _DUMP_PLANS[id(schema)] = (schema, plan)
    return plan


def _kept(field: fields.Field[Any]) -> type | None:
    """The type whose values a field's _serialize returns as they are: a str of a String's (ensure_text_type), an int
    of an Integer's and a float of a Float's (int(value), float(value); not as strings), a bool of a Boolean's
    (Field._serialize); None for any other field class."""
    kept = _KEPT.get(type(field))
    return None if kept is None or getattr(field, "as_string", False) else kept


def _validated_once(field: fields.Field[Any]) -> None:
    """marshmallow checks a value through `And(*field.validators)` made anew on each call (Field._validate_all, a
    property; ~40 a record loaded): made once here, the same validators in the same order, so the same errors."""
    field._validate = validate.And(*field.validators)  # type: ignore[method-assign]
    inner = getattr(field, "inner", None)  # a List's item field, bound by the List, not the schema
    if isinstance(inner, fields.Field):
        _validated_once(inner)


class IdentifierSchema(Strict):
    system = Text(max_length=500, required=True)
    value = Text(required=True)


class NameSchema(Strict):
    family = Text()
    given = fields.List(Text(), validate=validate.Length(max=10))


class PatientSchema(Strict):
    identifier = fields.Nested(IdentifierSchema, required=True)
    name = fields.Nested(NameSchema)
    birth_date = fields.Date()
    sex = one_of(v.SEX)


class PersonSchema(Strict):
    identifier = fields.Nested(IdentifierSchema, required=True)
    name = Text()


class RecordSchema(Strict):
    """Fields common to every record."""

    external_id = Text(required=True)
    source = Text(load_default="default")
    patient = fields.Nested(PatientSchema, required=True)


# --- treatment plan ------------------------------------------------------------------------

class IndicationSchema(Strict):
    code = one_of(v.INDICATIONS, required=True)
    icd10 = fields.String(validate=validate.Regexp(ICD10_CM, error="Not an ICD-10-CM code."))


class DoseSchema(Strict):
    value = positive(required=True)
    unit = one_of(v.DOSE_UNITS, required=True)


class FrequencySchema(Strict):
    count = positive_int(required=True)  # Timing.repeat.frequency
    period = positive(required=True)
    period_unit = one_of(v.PERIOD_UNITS, required=True)


class DatePeriodSchema(Strict):
    start = fields.Date()
    end = fields.Date()


class GoalSchema(Strict):
    measure = one_of(v.GOAL_MEASURES, required=True)
    target = one_of(v.GOAL_TARGETS, required=True)
    baseline = unsigned_int()  # the goal-baseline-score extension's valueUnsignedInt


class AntidepressantSchema(Strict):
    name = Text(required=True)
    rxnorm = fields.String(validate=validate.Regexp(RXNORM, error="Not an RxNorm code (digits)."))


class ConcurrentTherapySchema(Strict):
    psychotherapy = Text(allow_none=True)
    antidepressants = fields.List(fields.Nested(AntidepressantSchema), validate=validate.Length(max=50))


class OverrideSchema(Strict):
    """A clinician's documented decision to treat despite a present contraindication: who, why and when."""

    by = fields.Nested(PersonSchema, required=True)
    reason = Text(max_length=2000, required=True)
    at = instant(required=True)


class ContraindicationSchema(Strict):
    code = local_code(required=True)
    present = StrictBoolean(required=True)
    override = fields.Nested(OverrideSchema)


class BloodPressureSchema(Strict):
    systolic = integer(1, required=True)
    diastolic = integer(1, required=True)


class InteractingMedicationSchema(Strict):
    name = Text(required=True)
    class_ = one_of(v.INTERACTING_CLASSES, required=True, data_key="class")


class ScreeningSchema(Strict):
    contraindications = fields.List(fields.Nested(ContraindicationSchema), validate=validate.Length(max=50))
    baseline_bp = fields.Nested(BloodPressureSchema)
    pregnant = StrictBoolean(allow_none=True)
    breastfeeding = StrictBoolean(allow_none=True)
    interacting_medications = fields.List(fields.Nested(InteractingMedicationSchema),
                                          validate=validate.Length(max=50))


class TreatmentPlanSchema(RecordSchema):
    status = one_of(v.PLAN_STATUS, required=True)
    indication = fields.Nested(IndicationSchema, required=True)
    prior_antidepressant_trials = unsigned_int()  # the priorTrials extension's valueInteger
    medication = one_of(v.MEDICATIONS, required=True)
    route = one_of(v.ROUTES, required=True)
    dose = fields.Nested(DoseSchema, required=True)
    infusion_minutes = integer(1)
    phase = one_of(v.PHASES)
    sessions_planned = positive_int()  # Timing.repeat.count
    frequency = fields.Nested(FrequencySchema)
    period = fields.Nested(DatePeriodSchema)
    goals = fields.List(fields.Nested(GoalSchema), validate=validate.Length(max=20))
    concurrent_therapy = fields.Nested(ConcurrentTherapySchema)
    screening = fields.Nested(ScreeningSchema)
    prescriber = fields.Nested(PersonSchema)


# --- administration (one session) ----------------------------------------------------------

class VitalsSchema(Strict):
    at = instant(required=True)
    phase = one_of(v.VITAL_PHASES, required=True)
    systolic = integer(1)
    diastolic = integer(1)
    heart_rate = integer(1)
    spo2 = integer(0, 100)  # percent
    respiratory_rate = integer(1)


class ScoreSchema(Strict):
    instrument = one_of(v.SESSION_SCALES, required=True)
    value = integer(required=True)
    at = instant(required=True)
    anchoring = one_of(v.BPRS_ANCHORINGS)  # bprs-positive only (rules.score_anchoring); absent means 0-6


class ConcomitantMedicationSchema(Strict):
    """A medication taken before this session, as the REMS Patient Monitoring Form asks for it."""

    name = Text(required=True)
    class_ = one_of(v.INTERACTING_CLASSES, required=True, data_key="class")
    rxnorm = fields.String(validate=validate.Regexp(RXNORM, error="Not an RxNorm code (digits)."))


class AdministrationSchema(RecordSchema):
    plan_external_id = Text()
    session_number = positive_int()  # the sessionNumber extension's valuePositiveInt
    status = one_of(v.SESSION_STATUS, required=True)
    status_reason = Text(max_length=1000)
    medication = one_of(v.MEDICATIONS, required=True)
    route = one_of(v.ROUTES)  # required with a dose (rules.session_status); a session not done has none
    dose_mg = positive()
    weight_kg = positive()
    started_at = instant(required=True)
    ended_at = instant()
    lot_number = Text(max_length=100)
    performer = fields.Nested(PersonSchema)
    vitals = fields.List(fields.Nested(VitalsSchema), validate=validate.Length(max=200))
    scores = fields.List(fields.Nested(ScoreSchema), validate=validate.Length(max=200))
    concomitant_medications = fields.List(fields.Nested(ConcomitantMedicationSchema),
                                          validate=validate.Length(max=50))
    ready_to_leave_at = instant()
    monitoring_ended_at = instant()
    discharged_with_escort = StrictBoolean()


# --- adverse event -------------------------------------------------------------------------

class AdverseEventSchema(RecordSchema):
    administration_external_id = Text()
    onset_at = instant(required=True)
    term = one_of(v.AE_TERMS, required=True)
    description = Text(max_length=4000)
    serious = StrictBoolean(required=True)
    seriousness_criteria = fields.List(one_of(v.SERIOUSNESS), validate=validate.Length(max=len(v.SERIOUSNESS)))
    severity = one_of(v.SEVERITY)
    ctcae_grade = integer(1, 5)
    outcome = one_of(v.AE_OUTCOMES)
    action_taken = one_of(v.AE_ACTIONS)
    causality = one_of(v.CAUSALITY)
    recorded_by = fields.Nested(PersonSchema)


# --- assessment ----------------------------------------------------------------------------

class AssessmentSchema(RecordSchema):
    plan_external_id = Text()
    instrument = one_of(v.ASSESSMENT_INSTRUMENTS, required=True)
    score = integer(required=True)
    phq9_item9 = integer(0, 3)  # PHQ-9 only (rules.phq9_item9_instrument): item 9's answer, LOINC 44260-8
    at = instant(required=True)


def flatten_errors(messages: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Turn marshmallow's nested error dict into (path, message) pairs: `vitals[0].spo2`."""
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [(prefix or "$", m) for m in messages]
    if isinstance(messages, list):
        return [pair for m in messages for pair in flatten_errors(m, prefix)]
    pairs: list[tuple[str, str]] = []
    for key, sub in messages.items():
        if isinstance(key, int):
            path = f"{prefix}[{key}]"
        elif key == "_schema":
            path = prefix
        else:
            path = f"{prefix}.{key}" if prefix else str(key)
        pairs.extend(flatten_errors(sub, path))
    return pairs
