"""Rules over a schema-valid record: 'error' issues refuse it (422 naming the field), findings flag it.

Three families, never confused: record consistency and impossible data (errors, here and in plausibility.py),
clinical findings on data that can be real (Finding: high, moderate or low; session_rules.py, plan_rules.py,
catalogued with their sources in findings.py), and notes ('warning') about the record's links and wording.
Every threshold cites its source in ../shared/reference/clinical.md.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.domain import plan_rules, plausibility, session_rules
from service.errors import Issue

Record = dict[str, Any]

#: Score ranges per instrument (inclusive). PHQ-9 0–27 (clinical.md §6, Kroenke bands);
#: MADRS 0–60, QIDS-SR16 0–27, GAD-7 0–21 (../shared/design/DOMAIN.md, clinical.md §6); CADSS 23 items × 0–4 = 0–92,
#: MOAA/S 0–5 (clinical.md §3); HAM-D17 17 items, total 0–52 (clinical.md §3, depression scales).
#: C-SSRS ideation severity 0–5: the five levels of LOINC answer list LL5434-7 (../shared/reference/terminology.md §4a)
#: plus 0 for none.
SCORE_RANGES: dict[str, tuple[int, int]] = {
    "phq9": (0, 27), "madrs": (0, 60), "qids-sr16": (0, 27), "gad7": (0, 21),
    "cadss": (0, 92), "moaas": (0, 5), "hamd17": (0, 52), "cssrs": (0, 5),
    "bprs-positive": (0, 24),  # under the default anchoring; BPRS_POSITIVE_RANGES has both
}
#: BPRS positive: 4 items, each 0–6 (total 0–24) or 1–7 (total 4–28) as the sender declares; never reinterpreted
#: (clinical.md §3, BPRS+). No declaration means 0–6, the contract's default (../shared/design/DOMAIN.md).
BPRS_POSITIVE_RANGES = {"0-6": (0, 24), "1-7": (4, 28)}
#: TRD = inadequate response to ≥ 2 antidepressants in the episode (clinical.md §6).
TRD_MIN_TRIALS = 2


class Lookup(Protocol):
    """Finds another stored record's content by kind, source and external_id (or None)."""

    def __call__(self, kind: str, source: str, external_id: str) -> Record | None: ...


class Course(Protocol):
    """The stored sessions of one plan (by source and plan_external_id) of one patient, within a week either side
    of `around`."""

    def __call__(self, source: str, plan_external_id: str, patient: Record, around: datetime) -> list[Record]: ...


def _no_lookup(kind: str, source: str, external_id: str) -> Record | None:
    return None


def _no_course(source: str, plan_external_id: str, patient: Record, around: datetime) -> list[Record]:
    return []


@dataclass(frozen=True)
class RuleContext:
    lookup: Lookup
    course: Course = _no_course


NO_CONTEXT = RuleContext(lookup=_no_lookup)
Rule = Callable[[Record, RuleContext], Iterator[Issue]]


def error(field: str, message: str, rule: str) -> Issue:
    return Issue(field, message, "error", rule)


def warning(field: str, message: str, rule: str) -> Issue:
    return Issue(field, message, "warning", rule)


def _parse_dt(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value) if isinstance(value, str) else None


# --- shared checks -------------------------------------------------------------------------

def score_in_range(instrument: str, value: int, field: str, anchoring: str | None = None) -> Iterator[Issue]:
    low, high = BPRS_POSITIVE_RANGES[anchoring or "0-6"] if instrument == "bprs-positive" else SCORE_RANGES[instrument]
    scale = f"{instrument} (items anchored {anchoring or '0-6'})" if instrument == "bprs-positive" else instrument
    if not low <= value <= high:
        yield error(field, f"{scale} score {value} is outside the instrument's range {low}–{high}", "score-range")


def esketamine_plan_dose(dose_mg: float, field: str) -> Iterator[Issue]:
    """A plan orders whole 28 mg devices, 56 or 84 mg a session (clinical.md §2); a session given otherwise is a
    finding instead (session_rules.esketamine_dose)."""
    if dose_mg % session_rules.ESKETAMINE_DEVICE_MG or dose_mg > session_rules.ESKETAMINE_MAX_MG:
        yield error(field, f"esketamine dose {dose_mg:g} mg must be a multiple of 28 mg (one device) "
                           f"and at most 84 mg", "esketamine-dose")


def not_before(later: Any, earlier: Any, field: str, what: str, rule: str) -> Iterator[Issue]:
    end, start = _parse_dt(later), _parse_dt(earlier)
    if end is not None and start is not None and end < start:
        yield error(field, what, rule)


# --- treatment plan ------------------------------------------------------------------------

def plan_period(plan: Record, ctx: RuleContext) -> Iterator[Issue]:
    period = plan.get("period") or {}
    if period.get("start") and period.get("end") and period["end"] < period["start"]:
        yield error("period.end", "period end is before its start", "period-order")


def plan_dose(plan: Record, ctx: RuleContext) -> Iterator[Issue]:
    dose = plan["dose"]
    if plan["medication"] == "esketamine":
        if dose["unit"] != "mg":
            yield error("dose.unit", "esketamine is dosed in whole devices of 28 mg: use unit mg", "esketamine-dose")
        else:
            yield from esketamine_plan_dose(dose["value"], "dose.value")


def plan_trd_trials(plan: Record, ctx: RuleContext) -> Iterator[Issue]:
    trials = plan.get("prior_antidepressant_trials")
    if plan["indication"]["code"] == "trd" and trials is not None and trials < TRD_MIN_TRIALS:
        yield warning("prior_antidepressant_trials", f"TRD means inadequate response to at least "
                      f"{TRD_MIN_TRIALS} antidepressant trials; {trials} recorded", "trd-trials")


def plan_goals(plan: Record, ctx: RuleContext) -> Iterator[Issue]:
    """A goal's baseline is a score on the goal's own scale (response and remission are judged against it)."""
    for i, goal in enumerate(plan.get("goals") or []):
        if goal.get("baseline") is not None:
            yield from score_in_range(goal["measure"], goal["baseline"], f"goals[{i}].baseline")


def plan_clinical(plan: Record, ctx: RuleContext) -> Iterator[Issue]:
    yield from plan_rules.plan_findings(plan)


# --- administration ------------------------------------------------------------------------

def session_times(adm: Record, ctx: RuleContext) -> Iterator[Issue]:
    yield from not_before(adm.get("ended_at"), adm["started_at"], "ended_at",
                          "ended_at is before started_at", "session-order")
    yield from not_before(adm.get("monitoring_ended_at"), adm["started_at"], "monitoring_ended_at",
                          "monitoring_ended_at is before started_at", "session-order")


def session_status(adm: Record, ctx: RuleContext) -> Iterator[Issue]:
    if adm["status"] in ("stopped", "not-done") and not adm.get("status_reason"):
        yield error("status_reason", f"a session with status {adm['status']} needs a status_reason", "status-reason")
    if adm["status"] == "completed" and adm.get("dose_mg") is None:
        yield error("dose_mg", "a completed session needs the dose given (dose_mg)", "dose-given")
    if adm.get("dose_mg") is not None and not adm.get("route"):
        yield error("route", "a session with a dose needs the route it was given by", "route-given")
    if adm.get("dose_mg") is not None and adm.get("route") == "intravenous" and adm.get("ended_at") is None:
        # the FHIR form needs the infusion's end or rate (profile invariant ket-2)
        yield error("ended_at", "an intravenous dose needs the time the infusion ended (ended_at)", "infusion-end")


def session_clinical(adm: Record, ctx: RuleContext) -> Iterator[Issue]:
    plan_id = adm.get("plan_external_id")
    plan = ctx.lookup("treatment-plan", adm["source"], plan_id) if plan_id else None
    course = ctx.course(adm["source"], plan_id, adm["patient"], adm["started_at"]) \
        if plan_id and adm["medication"] == "esketamine" else []
    yield from session_rules.session_findings(adm, plan, course)


def session_scores(adm: Record, ctx: RuleContext) -> Iterator[Issue]:
    for i, score in enumerate(adm.get("scores") or []):
        if score.get("anchoring") and score["instrument"] != "bprs-positive":
            yield error(f"scores[{i}].anchoring", f"anchoring is declared for bprs-positive only, not "
                        f"{score['instrument']}", "score-anchoring")
            continue
        yield from score_in_range(score["instrument"], score["value"], f"scores[{i}].value", score.get("anchoring"))


# --- adverse event -------------------------------------------------------------------------

def ae_seriousness(ae: Record, ctx: RuleContext) -> Iterator[Issue]:
    criteria = ae.get("seriousness_criteria") or []
    if ae["serious"] and not criteria:
        yield error("seriousness_criteria", "a serious adverse event needs at least one seriousness "
                    "criterion", "seriousness")
    if not ae["serious"] and criteria:
        yield error("seriousness_criteria", "seriousness criteria given for an event marked not serious",
                    "seriousness")


def ae_description(ae: Record, ctx: RuleContext) -> Iterator[Issue]:
    if ae["term"] == "other" and not ae.get("description"):
        yield error("description", "term 'other' needs a description", "other-term")


def ae_onset(ae: Record, ctx: RuleContext) -> Iterator[Issue]:
    ref = ae.get("administration_external_id")
    if not ref:
        return
    session = ctx.lookup("administration", ae["source"], ref)
    if session is None:
        yield warning("administration_external_id", f"no administration {ref!r} from source "
                      f"{ae['source']!r} is stored yet", "suspect-session")
        return
    yield from not_before(ae["onset_at"], session["started_at"], "onset_at",
                          f"onset is before the suspected session {ref!r} started", "onset-order")


# --- assessment ----------------------------------------------------------------------------

def assessment_clinical(rec: Record, ctx: RuleContext) -> Iterator[Issue]:
    yield from plan_rules.assessment_findings(rec)


def plausible(kind: str) -> Rule:
    def run(record: Record, ctx: RuleContext) -> Iterator[Issue]:
        yield from plausibility.check(kind, record)
    run.__name__ = f"plausible_{kind.replace('-', '_')}"
    return run


def assessment_score(rec: Record, ctx: RuleContext) -> Iterator[Issue]:
    yield from score_in_range(rec["instrument"], rec["score"], "score")
    item9 = rec.get("phq9_item9")
    if item9 is None:
        return
    if rec["instrument"] != "phq9":
        yield error("phq9_item9", f"phq9_item9 belongs to a PHQ-9, not a {rec['instrument']} score", "phq9-item9")
    elif item9 > rec["score"]:
        yield error("phq9_item9", f"item 9 answered {item9} cannot exceed the PHQ-9 total {rec['score']}, "
                    "which includes it", "phq9-item9")


RULES: dict[str, tuple[Rule, ...]] = {
    "treatment-plan": (plausible("treatment-plan"), plan_period, plan_dose, plan_trd_trials, plan_goals,
                       plan_clinical),
    "administration": (plausible("administration"), session_times, session_status, session_scores,
                       session_clinical),
    "adverse-event": (plausible("adverse-event"), ae_seriousness, ae_description, ae_onset),
    "assessment": (plausible("assessment"), assessment_score, assessment_clinical),
}


def check(kind: str, record: Record, ctx: RuleContext = NO_CONTEXT) -> list[Issue]:
    """Run every rule of `kind` over a schema-loaded record; issues from all rules, in order."""
    return [issue for rule in RULES[kind] for issue in rule(record, ctx)]
