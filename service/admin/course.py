"""A patient's course for the console: patients found by identifier, and one patient's plans, sessions,
scores, adverse events and clinical warnings, read from the record store (current versions)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from service.app.people import current_patient, current_persons
from service.store.engine import session
from service.store.models import RecordRow

Record = dict[str, Any]
#: Most patients a search lists, and most records one course page reads (a course is far smaller).
SEARCH_LIMIT = 50
COURSE_LIMIT = 2000
#: Scores that measure the course (outcome), not the session itself (CADSS, MOAA/S, BPRS+ are in-session).
OUTCOME_INSTRUMENTS = ("phq9", "madrs", "cssrs", "qids-sr16", "hamd17", "gad7")
PHASE_ORDER = {"pre": 0, "intra": 1, "post": 2}


@dataclass(frozen=True)
class PatientHit:
    system: str
    value: str
    name: str
    records: int
    last_at: datetime | None


@dataclass(frozen=True)
class Reading:
    at: datetime
    phase: str
    systolic: int | None
    diastolic: int | None
    heart_rate: int | None
    spo2: int | None


@dataclass(frozen=True)
class Session:
    external_id: str
    number: int
    plan: str | None
    status: str
    status_reason: str | None
    medication: str
    route: str
    dose_mg: float
    weight_kg: float | None
    started_at: datetime
    ended_at: datetime | None
    readings: list[Reading]
    in_session: list[tuple[str, int]]       # (instrument, value) of CADSS, MOAA/S, BPRS+ in time order

    @property
    def mg_per_kg(self) -> float | None:
        return round(self.dose_mg / self.weight_kg, 2) if self.weight_kg else None


@dataclass(frozen=True)
class Score:
    instrument: str
    value: int
    at: datetime
    plan: str | None
    source: str             # `assessment demo-asmt-…` or `session 3`


@dataclass(frozen=True)
class AdverseEvent:
    external_id: str
    onset_at: datetime
    term: str
    description: str | None
    severity: str | None
    serious: bool
    outcome: str
    action_taken: str | None
    session: str | None      # the suspected session's external id


@dataclass(frozen=True)
class Warning:
    kind: str
    external_id: str
    field: str
    message: str
    rule: str | None
    severity: str = "warning"   # high, moderate or low for a clinical finding (service/domain/findings.py)


@dataclass(frozen=True)
class Event:
    """One line of the timeline."""

    at: datetime
    kind: str               # plan | session | score | adverse-event
    text: str


@dataclass
class Course:
    system: str
    value: str
    patient: Record
    plans: list[Record] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    adverse_events: list[AdverseEvent] = field(default_factory=list)
    warnings: list[Warning] = field(default_factory=list)
    #: (kind, external id, record id) of every record: the ways on to each one's resources, jobs and audit trail
    records: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return display_name(self.patient)

    def baseline(self, instrument: str) -> int | None:
        """The plan goal's baseline for this measure, else the first score recorded."""
        for plan in self.plans:
            for goal in plan.get("goals") or []:
                if goal.get("measure") == instrument and goal.get("baseline") is not None:
                    return int(goal["baseline"])
        first = next((s for s in self.scores if s.instrument == instrument), None)
        return first.value if first else None

    def has_goal(self, instrument: str) -> bool:
        return any(g.get("measure") == instrument for p in self.plans for g in p.get("goals") or [])

    def timeline(self) -> list[Event]:
        events = [Event(_day(p["period"]["start"]), "plan", _plan_line(p)) for p in self.plans if p.get("period")]
        events += [Event(s.started_at, "session", _session_line(s)) for s in self.sessions]
        events += [Event(s.at, "score", f"{s.instrument} {s.value} ({s.source})") for s in self.scores]
        events += [Event(a.onset_at, "adverse-event", _ae_line(a)) for a in self.adverse_events]
        return sorted(events, key=lambda e: (_utc(e.at), e.kind))


def display_name(patient: Record) -> str:
    name = patient.get("name") or {}
    parts = [*(name.get("given") or []), name.get("family") or ""]
    return " ".join(p for p in parts if p) or "(no name recorded)"


def search(engine: Engine, text: str) -> list[PatientHit]:
    """Patients whose identifier value contains `text` (case-insensitive), exact matches first."""
    needle = text.strip()
    if not needle:
        return []
    pattern = "%" + needle.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    stmt = (select(RecordRow.patient_system, RecordRow.patient_value, func.count(), func.max(RecordRow.clinical_at),
                   func.max(RecordRow.pk))
            .where(func.lower(RecordRow.patient_value).like(pattern, escape="\\"))
            .group_by(RecordRow.patient_system, RecordRow.patient_value)
            .order_by(RecordRow.patient_value).limit(SEARCH_LIMIT))
    with session(engine) as s:
        found = s.execute(stmt).all()
        last = {pk: content.get("patient", {}) for pk, content in
                s.execute(select(RecordRow.pk, RecordRow.content).where(RecordRow.pk.in_([r[4] for r in found])))}
    # the Patient as now known (service/app/people.py), as the course page shows it; the last record's patient
    # only for one the store does not hold (or holds twice)
    current = current_persons(engine, "Patient", [(system, value) for system, value, *_ in found])
    hits = [PatientHit(system, value, display_name(current.get((system, value)) or last.get(pk, {})), n, at)
            for system, value, n, at, pk in found]
    return sorted(hits, key=lambda h: (h.value.lower() != needle.lower(), h.value, h.system))


def course(engine: Engine, system: str, value: str) -> Course | None:
    """Everything stored about one patient, or None when no record names this identifier."""
    stmt = (select(RecordRow.kind, RecordRow.content, RecordRow.warnings, RecordRow.id)
            .where(RecordRow.patient_system == system, RecordRow.patient_value == value)
            .order_by(RecordRow.pk).limit(COURSE_LIMIT))
    with session(engine) as s:
        rows = s.execute(stmt).all()
    if not rows:
        return None
    # the Patient as now known (service/app/people.py), not the last record's demographics
    built = Course(system, value, current_patient(engine, system, value) or rows[-1][1].get("patient", {}))
    for kind, content, warnings, record_id in rows:
        _add(built, kind, content)
        built.records.append((kind, content["external_id"], record_id))
        built.warnings += [Warning(kind, content["external_id"], w.get("field", ""), w.get("message", ""),
                                   w.get("rule"), w.get("severity", "warning")) for w in warnings or []]
    built.plans.sort(key=lambda p: (p.get("period") or {}).get("start") or "")
    built.sessions.sort(key=lambda x: (_utc(x.started_at), x.number))
    built.scores.sort(key=lambda x: _utc(x.at))
    built.adverse_events.sort(key=lambda x: _utc(x.onset_at))
    return built


def _add(built: Course, kind: str, rec: Record) -> None:
    if kind == "treatment-plan":
        built.plans.append(rec)
    elif kind == "administration":
        built.sessions.append(_session(rec))
        built.scores += [Score(s["instrument"], s["value"], _dt(s["at"]), rec.get("plan_external_id"),
                               f"session {rec['session_number']}")
                         for s in rec.get("scores") or [] if s["instrument"] in OUTCOME_INSTRUMENTS]
    elif kind == "assessment":
        built.scores.append(Score(rec["instrument"], rec["score"], _dt(rec["at"]), rec.get("plan_external_id"),
                                  f"assessment {rec['external_id']}"))
    elif kind == "adverse-event":
        built.adverse_events.append(AdverseEvent(
            rec["external_id"], _dt(rec["onset_at"]), rec["term"], rec.get("description"), rec.get("severity"),
            bool(rec.get("serious")), rec.get("outcome", "unknown"), rec.get("action_taken"),
            rec.get("administration_external_id")))


def _session(rec: Record) -> Session:
    readings = [Reading(_dt(v["at"]), v["phase"], v.get("systolic"), v.get("diastolic"), v.get("heart_rate"),
                        v.get("spo2")) for v in rec.get("vitals") or []]
    readings.sort(key=lambda r: (_utc(r.at), PHASE_ORDER.get(r.phase, 3)))
    in_session = [(s["instrument"], s["value"]) for s in sorted(rec.get("scores") or [], key=lambda s: s["at"])
                  if s["instrument"] not in OUTCOME_INSTRUMENTS]
    return Session(rec["external_id"], rec["session_number"], rec.get("plan_external_id"), rec["status"],
                   rec.get("status_reason"), rec["medication"], rec["route"], rec["dose_mg"], rec.get("weight_kg"),
                   _dt(rec["started_at"]), _dt(rec["ended_at"]) if rec.get("ended_at") else None, readings,
                   in_session)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _day(text: str) -> datetime:
    return datetime.fromisoformat(text + "T00:00:00+00:00") if len(text) == 10 else _dt(text)


def _utc(moment: datetime) -> float:
    return moment.timestamp()  # stored datetimes always carry an offset (the schema refuses others)


def _plan_line(plan: Record) -> str:
    dose = plan.get("dose") or {}
    return (f"plan {plan['external_id']} starts: {plan.get('medication')} {plan.get('route')} "
            f"{dose.get('value', '')} {dose.get('unit', '')}, {plan.get('sessions_planned')} sessions "
            f"({plan.get('phase')}, {plan.get('status')})")


def _session_line(s: Session) -> str:
    per_kg = f" ({s.mg_per_kg} mg/kg)" if s.mg_per_kg else ""
    reason = f": {s.status_reason}" if s.status_reason else ""
    return f"session {s.number}: {s.medication} {s.route} {s.dose_mg:g} mg{per_kg}, {s.status}{reason}"


def _ae_line(a: AdverseEvent) -> str:
    serious = "serious, " if a.serious else ""
    return (f"adverse event: {a.term} ({serious}{a.severity or 'severity not recorded'}), outcome {a.outcome}"
            + (f", in session {a.session}" if a.session else ""))
