"""Impossible data: values no living patient or real session can have are refused, naming the record field.

These are data errors, not clinical findings (../shared/reference/clinical.md §3 "Data plausibility": systolic
below diastolic, a heart rate of 400, SpO2 above 100 %, a birth date in the future, an infusion lasting days).
The papers that section points to (Genes 2013, PMC3881102; Skyttberg 2017, PMC6220689) score vital signs
against physiologic limits, but their limit tables could not be read (only their abstracts were reachable): each
limit below is a service choice, with its reason beside it, set well outside anything measurable in a living
patient, so that only slips (unit mix-ups, extra digits) are refused and every extreme but real reading is kept
and flagged by the clinical rules.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from service.errors import Issue

Record = dict[str, Any]

#: Per vital sign: (lowest, highest) a cuff, a monitor or a count can read in a living patient. Every limit is a
#: SERVICE CHOICE, not a published figure: the papers clinical.md "Data plausibility" names (Genes 2013, PMC3881102;
#: Skyttberg 2017, PMC6220689) were searched again on 2026-12-05 and only their abstracts could be read, not their
#: limit tables. Each limit is set far outside anything measurable, so that only a slip (an extra digit, a unit
#: mix-up) is refused and every extreme but real reading is kept and flagged by the clinical rules:
VITAL_LIMITS: dict[str, tuple[int, int]] = {
    # service choice: below 30 no cuff reads a systolic pressure; 300 is the top of a sphygmomanometer's scale
    "systolic": (30, 300),
    # service choice: 10–200 leaves every reported hypertensive crisis inside; 200 is still under systolic's limit
    "diastolic": (10, 200),
    # service choice: 20–300 keeps extreme bradycardia and tachyarrhythmias; clinical.md names 400 as impossible
    "heart_rate": (20, 300),
    # service choice: 1–80 keeps the apnoeic and the panting patient; 0 is no breathing, which is not a rate
    "respiratory_rate": (1, 80),
    # every reading a pulse oximeter can show; above 100 % is impossible (clinical.md, "SpO2 above 100 %")
    "spo2": (0, 100),
}
#: Body weight in kg for a weight-based dose. Service choice (same papers unread): 2 kg is below any patient this
#: therapy is given to, 400 kg above the heaviest adults weighed in hospital; a slip (grams, pounds) falls outside.
WEIGHT_KG = (2.0, 400.0)
#: Nothing clinical is dated before 1900 or more than a day ahead (clinical.md "Data plausibility": a birth
#: date in the future, a session in 1850); a day covers every time zone's today.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
AHEAD = timedelta(days=1)
#: A session — infusion, observation, readings — lasts hours, not days ("an infusion lasting days", clinical.md).
#: Service choice: 24 hours, far beyond the 2-hour esketamine observation or a 100-minute infusion (clinical.md §1–§2).
SESSION_SPAN = timedelta(hours=24)
#: CTCAE v5 grade ↔ the mild/moderate/severe of the record (clinical.md §7 Severity grading): grade 1 mild,
#: 2 moderate, 3 severe; 4 life-threatening and 5 death are beyond severe.
CTCAE_SEVERITY = {1: "mild", 2: "moderate", 3: "severe", 4: "severe", 5: "severe"}


def error(field: str, message: str) -> Issue:
    return Issue(field, message, "error", "implausible")


def _aware(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def when(value: Any, field: str, now: datetime, future_ok: bool = False) -> Iterator[Issue]:
    if value is None:
        return
    moment = _aware(value)
    if moment < EARLIEST:
        yield error(field, f"{value.isoformat()} is before 1900")
    elif not future_ok and moment > now + AHEAD:
        yield error(field, f"{value.isoformat()} is in the future")


def vitals(items: list[Record], started: datetime | None) -> Iterator[Issue]:
    for i, vit in enumerate(items):
        for measure, (low, high) in VITAL_LIMITS.items():
            value = vit.get(measure)
            if value is not None and not low <= value <= high:
                yield error(f"vitals[{i}].{measure}", f"{measure} {value} cannot be measured in a living patient "
                            f"(plausible {low}–{high})")
        sys_, dia = vit.get("systolic"), vit.get("diastolic")
        if sys_ is not None and dia is not None and sys_ <= dia:
            yield error(f"vitals[{i}].systolic", f"systolic {sys_} is not above diastolic {dia}")
        yield from _within_session(vit["at"], started, f"vitals[{i}].at")


def _within_session(at: datetime, started: datetime | None, field: str) -> Iterator[Issue]:
    if started is not None and abs(at - started) > SESSION_SPAN:
        yield error(field, f"{at.isoformat()} is more than 24 hours from the session's start")


def administration(adm: Record, now: datetime) -> Iterator[Issue]:
    started = adm["started_at"]
    yield from patient(adm, now)
    for name in ("started_at", "ended_at", "monitoring_ended_at", "ready_to_leave_at"):
        yield from when(adm.get(name), name, now)
    for name in ("ended_at", "monitoring_ended_at", "ready_to_leave_at"):
        later = adm.get(name)
        if later is not None and later - started > SESSION_SPAN:
            hours = (later - started).total_seconds() / 3600
            yield error(name, f"{name} is {hours:.0f} hours after the start: no session lasts more than 24 hours")
    weight = adm.get("weight_kg")
    if weight is not None and not WEIGHT_KG[0] <= weight <= WEIGHT_KG[1]:
        yield error("weight_kg", f"{weight:g} kg is not a patient's weight (plausible {WEIGHT_KG[0]:g}–"
                    f"{WEIGHT_KG[1]:g})")
    yield from vitals(adm.get("vitals") or [], started)
    for i, score in enumerate(adm.get("scores") or []):
        yield from when(score["at"], f"scores[{i}].at", now)
        yield from _within_session(score["at"], started, f"scores[{i}].at")


def adverse_event(ae: Record, now: datetime) -> Iterator[Issue]:
    yield from patient(ae, now)
    yield from when(ae["onset_at"], "onset_at", now)
    criteria, grade = ae.get("seriousness_criteria") or [], ae.get("ctcae_grade")
    if ae.get("outcome") == "fatal":
        if not ae["serious"]:
            yield error("serious", "an event with outcome fatal is serious (death is a seriousness criterion)")
        elif "death" not in criteria:
            yield error("seriousness_criteria", "an event with outcome fatal has the seriousness criterion death")
    if grade is not None and ae.get("severity") and CTCAE_SEVERITY[grade] != ae["severity"]:
        yield error("ctcae_grade", f"CTCAE grade {grade} is {CTCAE_SEVERITY[grade]}, not {ae['severity']} "
                    "(grade 1 mild, 2 moderate, 3–5 severe)")
    if grade is not None and grade >= 4 and not ae["serious"]:
        yield error("serious", f"CTCAE grade {grade} (life-threatening or fatal) is a serious event")
    if grade == 5 and ae.get("outcome") not in (None, "fatal"):
        yield error("outcome", f"CTCAE grade 5 is death; the outcome {ae['outcome']!r} contradicts it")


def treatment_plan(plan: Record, now: datetime) -> Iterator[Issue]:
    yield from patient(plan, now)
    period = plan.get("period") or {}
    for name in ("start", "end"):  # a plan looks ahead: only the 1900 limit applies
        yield from when(period.get(name), f"period.{name}", now, future_ok=True)
    for i, item in enumerate((plan.get("screening") or {}).get("contraindications") or []):
        if item.get("override"):
            yield from when(item["override"]["at"], f"screening.contraindications[{i}].override.at", now)
    bp = (plan.get("screening") or {}).get("baseline_bp")
    if bp:
        for issue in vitals([{**bp, "at": now}], None):
            yield Issue(issue.field.replace("vitals[0]", "screening.baseline_bp"), issue.message, "error",
                        "implausible")


def assessment(rec: Record, now: datetime) -> Iterator[Issue]:
    yield from patient(rec, now)
    yield from when(rec["at"], "at", now)


def patient(rec: Record, now: datetime) -> Iterator[Issue]:
    born = rec["patient"].get("birth_date")
    if born is not None:
        if _aware(born) > now:
            yield error("patient.birth_date", f"birth date {born.isoformat()} is in the future")
        else:
            yield from when(born, "patient.birth_date", now)


CHECKS = {"treatment-plan": treatment_plan, "administration": administration, "adverse-event": adverse_event,
          "assessment": assessment}


def check(kind: str, record: Record, now: datetime | None = None) -> list[Issue]:
    """Every impossible value of a schema-loaded record, each naming its field."""
    return list(CHECKS[kind](record, now or datetime.now(UTC)))
