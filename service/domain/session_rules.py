"""Clinical findings on one session, for both medications and every route (each threshold cites clinical.md).

A session that happened is never refused for a clinical reason: these rules only flag (service/domain/findings.py
names each rule's code, severity and source).
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from service.domain.findings import Finding, rule
from service.errors import Issue

Record = dict[str, Any]

#: Pre-dose BP at which ketamine is contraindicated: >180 systolic or >100 diastolic (clinical.md §3 BP with
#: racemic ketamine, Swiss SmPC). Esketamine's general guide: >140/90 (clinical.md §3 Pre-dose BP).
PREDOSE_CONTRAINDICATED = (180, 100)
ESKETAMINE_PREDOSE_GUIDE = (140, 90)
#: Transient hypertension during or after dosing: SBP >180 and/or DBP >110 (clinical.md §3, Del Sant 2020).
TRANSIENT_HYPERTENSION = (180, 110)
#: Esketamine label: a rise of ≥40 systolic and/or ≥25 diastolic within 1.5 h (clinical.md §3 BP after dosing).
ESKETAMINE_RISE = (40, 25)
ESKETAMINE_RISE_WINDOW = timedelta(minutes=90)
#: SpO2 grading of the sedation adverse-event tool (clinical.md §3 HR and SpO2): <75 % at any time or <90 %
#: for >60 s is sentinel; 75–90 % for <60 s is minor.
SPO2_SENTINEL, SPO2_LOW, SPO2_SUSTAINED = 75, 90, timedelta(seconds=60)
#: MOAA/S 0 = no response to pain; 1–2 = responds only to prodding, shaking or pain (clinical.md §3 Sedation).
MOAAS_UNRESPONSIVE, MOAAS_DEEP = 0, 2
#: mg/kg ranges per route (clinical.md §1): IV usual 0.1–0.75 (Andrade 2017); SC 0.5–0.9 (KADS); oral 0.25–7.0
#: or 25–300 mg fixed (Andrade 2019). Anaesthetic (Ketalar): 1–4.5 mg/kg IV, 6.5–13 mg/kg IM, so above 1 mg/kg
#: IV (ASKP3's highest starting dose) and from 6.5 mg/kg IM are anaesthetic-range.
IV_MG_PER_KG = (0.1, 0.75)
SC_MG_PER_KG = (0.5, 0.9)
ORAL_MG_PER_KG, ORAL_MG = (0.25, 7.0), (25.0, 300.0)
ANAESTHETIC_MG_PER_KG = {"intravenous": 1.0, "intramuscular": 6.5}
#: The doses studied for routes without a range: intranasal racemic 50 mg (Lapidus 2014), sublingual 10 mg
#: (Lara 2013) (clinical.md §1).
STUDIED_MG = {"intranasal": 50.0, "sublingual": 10.0}
WEIGHT_BASED_ROUTES = ("intravenous", "intramuscular", "subcutaneous")
#: IV infusion: conventionally 40 min, ASKP3 40–60 min; sessions of 2–100 min reported (clinical.md §1).
INFUSION_USUAL, INFUSION_REPORTED = (40, 60), (2, 100)
#: Esketamine: 28 mg devices, 56 or 84 mg per session; Day 1 of TRD is 56 mg, 28 mg at ≥65 under non-US labels
#: (clinical.md §2).
ESKETAMINE_DEVICE_MG, ESKETAMINE_MAX_MG, ESKETAMINE_DAY1_MG, ESKETAMINE_OLDER_AGE = 28, 84, 56, 65
ESKETAMINE_MONITORING = timedelta(minutes=120)   # ≥ 2 h at every session (clinical.md §2, boxed warning, REMS)
ESKETAMINE_BP_RECHECK = (timedelta(minutes=20), timedelta(minutes=60))  # "about 40 min after dosing" (§2)
ADULT_AGE = 18   # esketamine is not approved in pediatrics (clinical.md §2 Indications)
#: Esketamine sessions per week of the course, counted from the stored sessions of the same plan. clinical.md §2
#: TRD schedule: "Weeks 1–4 (induction): twice weekly." / "Weeks 5–8: 56 or 84 mg once weekly." / "Week 9 onward:
#: 56 or 84 mg every 2 weeks or once weekly."; MDSI schedule: "84 mg twice weekly for 4 weeks"; and its
#: "Implications for rules": "weeks 1–4 max twice weekly; weeks 5–8 weekly; week 9 onward weekly or every other
#: week". A week of the course is 7 days from the plan's period.start (else from the course's first session); a
#: maintenance plan's course is weekly from its first week.
ESKETAMINE_INDUCTION_WEEKS, ESKETAMINE_INDUCTION_PER_WEEK, ESKETAMINE_LATER_PER_WEEK = 4, 2, 1
#: C-SSRS ideation 4 (intent) and 5 (plan and intent) are the top levels of LOINC LL5434-7 (terminology.md §4a).
CSSRS_HIGH = 4
#: Classes that interact and how (clinical.md §5).
INTERACTION_EFFECTS = {
    "benzodiazepine": "increases sedation and may reduce the antidepressant effect",
    "non-benzodiazepine-sedative-hypnotic": "increases sedation",
    "opioid": "increases sedation",
    "cns-depressant": "increases sedation",
    "psychostimulant": "increases blood pressure",
    "maoi": "increases blood pressure",
    "theophylline": "lowers the seizure threshold",
}


def above(reading: tuple[int | None, int | None], limit: tuple[int, int]) -> bool:
    return (reading[0] or 0) > limit[0] or (reading[1] or 0) > limit[1]


def _bp(vit: Record) -> tuple[int | None, int | None]:
    return vit.get("systolic"), vit.get("diastolic")


def _bp_text(vit: Record) -> str:
    return f"{vit.get('systolic', '?')}/{vit.get('diastolic', '?')} mmHg"


def age_on(born: date | None, day: date) -> int | None:
    if born is None:
        return None
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


# --- blood pressure --------------------------------------------------------------------------

def predose_bp(bp: tuple[int | None, int | None], medication: str, field: str, at: Any = None) -> Iterator[Finding]:
    """The pre-dose reading (or the screening's baseline) against the contraindication level and esketamine's guide."""
    values = {"systolic": bp[0], "diastolic": bp[1], **({"at": at.isoformat()} if at else {})}
    text = f"{bp[0]}/{bp[1]} mmHg"
    if above(bp, PREDOSE_CONTRAINDICATED):
        yield rule("predose-bp-above-180-100").finding(
            field, f"pre-dose blood pressure {text} is above 180/100, the level at which ketamine is "
                   "contraindicated", **values)
    elif medication == "esketamine" and above(bp, ESKETAMINE_PREDOSE_GUIDE):
        yield rule("esketamine-predose-bp").finding(
            field, f"pre-dose blood pressure {text} is above 140/90 for esketamine: weigh the rise against "
                   "benefit", **values)


def session_bp(adm: Record) -> Iterator[Finding]:
    started, vitals = adm["started_at"], adm.get("vitals") or []
    baseline = None
    for i, vit in enumerate(vitals):
        if vit["phase"] == "pre":
            yield from predose_bp(_bp(vit), adm["medication"], f"vitals[{i}]", vit["at"])
            if vit.get("systolic") is not None:
                baseline = vit
    for i, vit in enumerate(vitals):
        if vit["phase"] == "pre" or vit.get("systolic") is None and vit.get("diastolic") is None:
            continue
        values = {"systolic": vit.get("systolic"), "diastolic": vit.get("diastolic"), "at": vit["at"].isoformat(),
                  "phase": vit["phase"]}
        if above(_bp(vit), TRANSIENT_HYPERTENSION):
            yield rule("session-bp-above-180-110").finding(
                f"vitals[{i}]", f"blood pressure {_bp_text(vit)} {vit['phase']}-dose is above 180/110", **values)
        elif adm["medication"] == "esketamine" and baseline is not None and \
                vit["at"] - started <= ESKETAMINE_RISE_WINDOW and _rise(baseline, vit):
            yield rule("esketamine-bp-rise").finding(
                f"vitals[{i}]", f"blood pressure rose from {_bp_text(baseline)} to {_bp_text(vit)} within 90 "
                                "minutes of esketamine", **values, baseline=_bp_text(baseline))


def _rise(before: Record, after: Record) -> bool:
    rise_sys = (after.get("systolic") or 0) - (before.get("systolic") or 10**6)
    rise_dia = (after.get("diastolic") or 0) - (before.get("diastolic") or 10**6)
    return rise_sys >= ESKETAMINE_RISE[0] or rise_dia >= ESKETAMINE_RISE[1]


# --- breathing and sedation ------------------------------------------------------------------

def oxygen(adm: Record) -> Iterator[Finding]:
    low = [(i, v) for i, v in enumerate(adm.get("vitals") or []) if v.get("spo2") is not None]
    below = [(i, v) for i, v in low if v["spo2"] < SPO2_LOW]
    sustained = len(below) > 1 and below[-1][1]["at"] - below[0][1]["at"] > SPO2_SUSTAINED
    for i, vit in low:
        values = {"spo2": vit["spo2"], "at": vit["at"].isoformat()}
        if vit["spo2"] < SPO2_SENTINEL or (sustained and vit["spo2"] < SPO2_LOW):
            why = "below 75 %" if vit["spo2"] < SPO2_SENTINEL else "below 90 % for more than 60 seconds"
            yield rule("spo2-sentinel").finding(f"vitals[{i}].spo2", f"SpO2 {vit['spo2']} % {why}: a sentinel "
                                                "desaturation", **values)
        elif vit["spo2"] <= SPO2_LOW:
            yield rule("spo2-minor").finding(f"vitals[{i}].spo2", f"SpO2 {vit['spo2']} % (75–90 %): a minor "
                                             "desaturation if it lasted under 60 seconds", **values)


def sedation(adm: Record) -> Iterator[Finding]:
    for i, score in enumerate(adm.get("scores") or []):
        if score["instrument"] != "moaas":
            continue
        values = {"moaas": score["value"], "at": score["at"].isoformat()}
        if score["value"] == MOAAS_UNRESPONSIVE:
            yield rule("moaas-unresponsive").finding(f"scores[{i}].value", "MOAA/S 0: no response to pain "
                                                     "(loss of consciousness)", **values)
        elif score["value"] <= MOAAS_DEEP:
            yield rule("moaas-deep").finding(f"scores[{i}].value", f"MOAA/S {score['value']}: responds only to "
                                             "prodding, shaking or pain (deep sedation)", **values)


# --- doses -----------------------------------------------------------------------------------

def racemic_dose(route: str, field: str, per_kg: float | None, dose_mg: float | None,
                 values: dict[str, Any]) -> Iterator[Finding]:
    """A racemic ketamine dose against its route's range: in mg/kg when the weight (or a plan's mg/kg) gives it."""
    if per_kg is not None:
        values = {**values, "mg_per_kg": round(per_kg, 3)}
    anaesthetic = ANAESTHETIC_MG_PER_KG.get(route)
    if per_kg is not None and anaesthetic is not None and (per_kg > anaesthetic if route == "intravenous"
                                                           else per_kg >= anaesthetic):
        yield rule("anaesthetic-range-dose").finding(field, f"{route} ketamine {per_kg:.2f} mg/kg is in the "
                                                     "anaesthetic range", **values)
    elif route == "intravenous" and per_kg is not None and not IV_MG_PER_KG[0] <= per_kg <= IV_MG_PER_KG[1]:
        yield rule("iv-dose-range").finding(field, f"IV ketamine dose {per_kg:.2f} mg/kg is outside the usual "
                                            "0.1–0.75 mg/kg", **values)
    elif route == "subcutaneous" and per_kg is not None and not SC_MG_PER_KG[0] <= per_kg <= SC_MG_PER_KG[1]:
        yield rule("sc-dose-range").finding(field, f"SC ketamine {per_kg:.2f} mg/kg is outside 0.5–0.9 mg/kg",
                                            **values)
    elif route == "oral" and (per_kg is not None or dose_mg is not None):
        low, high = ORAL_MG_PER_KG if per_kg is not None else ORAL_MG
        amount = per_kg if per_kg is not None else dose_mg or 0.0
        unit = "mg/kg" if per_kg is not None else "mg"
        if not low <= amount <= high:
            yield rule("oral-dose-range").finding(field, f"oral ketamine {amount:g} {unit} is outside "
                                                  f"{low:g}–{high:g} {unit}", **values)
    elif route in STUDIED_MG and dose_mg is not None and dose_mg > STUDIED_MG[route]:
        name = "intranasal-racemic-dose" if route == "intranasal" else "sublingual-dose"
        yield rule(name).finding(field, f"{route} ketamine {dose_mg:g} mg is above the {STUDIED_MG[route]:g} mg "
                                 "studied", **values)
    elif route in WEIGHT_BASED_ROUTES and per_kg is None:
        yield rule("dose-weight-missing").finding(field, f"{route} ketamine {dose_mg:g} mg without the patient's "
                                                  "weight: the mg/kg dose cannot be checked", **values)


def esketamine_dose(dose_mg: float, field: str) -> Iterator[Finding]:
    if dose_mg % ESKETAMINE_DEVICE_MG or dose_mg > ESKETAMINE_MAX_MG:
        yield rule("esketamine-session-dose").finding(field, f"esketamine {dose_mg:g} mg is not 28, 56 or 84 mg "
                                                      "(whole 28 mg devices, at most 84 mg)", dose_mg=dose_mg)


def day_one(adm: Record, plan: Record | None) -> Iterator[Finding]:
    """Day 1 of esketamine for TRD is 56 mg; 28 mg for 65 and older under non-US labels (clinical.md §2)."""
    if plan is None or plan["indication"]["code"] != "trd" or adm.get("session_number") != 1:
        return
    dose, age = adm["dose_mg"], age_on(adm["patient"].get("birth_date"), adm["started_at"].date())
    if dose == ESKETAMINE_DAY1_MG or (dose == ESKETAMINE_DEVICE_MG and age is not None and
                                      age >= ESKETAMINE_OLDER_AGE):
        return
    yield rule("esketamine-day1-dose").finding("dose_mg", f"the first esketamine session for TRD is 56 mg, not "
                                               f"{dose:g} mg", dose_mg=dose, session_number=1)


def infusion(minutes: float, field: str) -> Iterator[Finding]:
    values = {"minutes": round(minutes, 1)}
    if minutes <= INFUSION_REPORTED[0] or minutes > INFUSION_REPORTED[1]:
        yield rule("infusion-duration-extreme").finding(field, f"an IV infusion of {minutes:g} minutes is at or "
                                                        "beyond the 2–100 minutes reported", **values)
    elif not INFUSION_USUAL[0] <= minutes <= INFUSION_USUAL[1]:
        yield rule("infusion-duration-unusual").finding(field, f"an IV infusion of {minutes:g} minutes is outside "
                                                        "the usual 40–60", **values)


def session_dose(adm: Record, plan: Record | None) -> Iterator[Issue]:
    dose, route = adm.get("dose_mg"), adm.get("route")
    if dose is None or route is None:
        return
    if adm["medication"] == "esketamine":
        off_label = list(esketamine_dose(dose, "dose_mg"))
        yield from off_label or day_one(adm, plan)  # one dose flag: a dose no device gives says it all
    else:
        weight = adm.get("weight_kg")
        values = {"dose_mg": dose, "route": route, **({"weight_kg": weight} if weight else {})}
        yield from racemic_dose(route, "dose_mg", dose / weight if weight else None, dose, values)
    if route == "intravenous" and adm.get("ended_at") is not None and adm["ended_at"] >= adm["started_at"]:
        yield from infusion((adm["ended_at"] - adm["started_at"]).total_seconds() / 60, "ended_at")


# --- esketamine label: age, monitoring, leaving ----------------------------------------------

def under_18(rec: Record, day: date, field: str = "patient.birth_date") -> Iterator[Finding]:
    age = age_on(rec["patient"].get("birth_date"), day)
    if rec["medication"] == "esketamine" and age is not None and age < ADULT_AGE:
        yield rule("esketamine-under-18").finding(field, f"esketamine is not approved under 18; the patient is "
                                                  f"{age}", age=age)


def monitoring(adm: Record) -> Iterator[Finding]:
    started, ended, ready = adm["started_at"], adm.get("monitoring_ended_at"), adm.get("ready_to_leave_at")
    if ended is None:
        yield rule("esketamine-monitoring").finding("monitoring_ended_at", "esketamine sessions need at least 120 "
                                                    "minutes of post-dose monitoring; its end is not recorded")
    elif ended - started < ESKETAMINE_MONITORING:
        minutes = int((ended - started).total_seconds() // 60)
        yield rule("esketamine-monitoring").finding("monitoring_ended_at", f"post-dose monitoring lasted {minutes} "
                                                    "minutes; esketamine needs at least 120", minutes=minutes)
    if ended is not None and ready is not None and ready > ended:
        yield rule("esketamine-left-before-ready").finding(
            "monitoring_ended_at", "monitoring ended before the patient was judged ready to leave",
            monitoring_ended_at=ended.isoformat(), ready_to_leave_at=ready.isoformat())
    if adm.get("discharged_with_escort") is False:
        yield rule("esketamine-discharge-without-escort").finding(
            "discharged_with_escort", "discharged without an escort after esketamine (no driving until the next "
                                      "day)")
    yield from _bp_after(adm)


def _bp_after(adm: Record) -> Iterator[Finding]:
    started = adm["started_at"]
    after = [(i, v) for i, v in enumerate(adm.get("vitals") or [])
             if v["phase"] != "pre" and v.get("systolic") is not None and v["at"] >= started]
    low, high = ESKETAMINE_BP_RECHECK
    if not any(low <= v["at"] - started <= high for _, v in after):
        yield rule("esketamine-bp-not-reassessed").finding("vitals", "no blood pressure 20–60 minutes after the "
                                                           "esketamine dose (reassess about 40 minutes after)")
    post = sorted((v["at"], i, v) for i, v in after if v["phase"] == "post")
    if len(post) >= 2 and post[-1][2]["systolic"] > post[-2][2]["systolic"]:
        last, before = post[-1][2], post[-2][2]
        yield rule("esketamine-bp-rising-at-discharge").finding(
            f"vitals[{post[-1][1]}]", f"blood pressure still rising at the end of monitoring ({_bp_text(before)} "
                                      f"then {_bp_text(last)})", systolic=last["systolic"],
            previous_systolic=before["systolic"])


# --- concomitant medications and scores ------------------------------------------------------

def interactions(meds: list[Record], base: str) -> Iterator[Finding]:
    for i, med in enumerate(meds):
        effect = INTERACTION_EFFECTS.get(med["class_"])
        if effect:
            yield rule("interaction").finding(f"{base}[{i}]", f"{med['name']} ({med['class_']}) {effect} with "
                                              "ketamine", name=med["name"], **{"class": med["class_"]})


def suicide_score(instrument: str, value: int, field: str, at: datetime) -> Iterator[Finding]:
    if instrument == "cssrs" and value >= CSSRS_HIGH:
        yield rule("cssrs-ideation").finding(field, f"C-SSRS suicidal ideation {value} (intent"
                                             f"{' with a plan' if value == 5 else ''}): evaluate suicide risk now",
                                             cssrs=value, at=at.isoformat())


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else datetime.fromisoformat(str(value)).date()


def course_frequency(adm: Record, plan: Record | None, course: list[Record]) -> Iterator[Finding]:
    """More esketamine sessions in one week of the course than the label's schedule gives for that week.

    `course`: the other stored sessions of the same plan (as stored: their own record for this one is left out)."""
    others = [s for s in course if s.get("external_id") != adm["external_id"] and s.get("status") != "not-done"
              and s.get("medication") == "esketamine"]
    start = (plan or {}).get("period", {}).get("start")
    first = _day(start) if start else min([_day(adm["started_at"]), *(_day(s["started_at"]) for s in others)])
    week = (_day(adm["started_at"]) - first).days // 7 + 1
    if week < 1:
        return  # before the course began: nothing to count against
    maintenance = (plan or {}).get("phase") == "maintenance"
    limit = ESKETAMINE_LATER_PER_WEEK if maintenance or week > ESKETAMINE_INDUCTION_WEEKS \
        else ESKETAMINE_INDUCTION_PER_WEEK
    count = 1 + sum((_day(s["started_at"]) - first).days // 7 + 1 == week for s in others)
    if count > limit:
        phase = "maintenance" if maintenance else "induction" if week <= ESKETAMINE_INDUCTION_WEEKS else \
            f"week {week} of the course"
        yield rule("esketamine-course-frequency").finding(
            "started_at", f"esketamine session {count} in week {week} of the course ({phase}); the label gives at "
                          f"most {limit} a week then", course_week=week, sessions_that_week=count, label_limit=limit)


def session_findings(adm: Record, plan: Record | None, course: list[Record] | None = None) -> Iterator[Issue]:
    """Every clinical finding of a schema-loaded session (`plan`: its stored treatment plan, if known; `course`:
    the plan's other stored sessions, if known)."""
    if adm["status"] == "not-done":
        return
    yield from session_bp(adm)
    yield from oxygen(adm)
    yield from sedation(adm)
    yield from session_dose(adm, plan)
    yield from interactions(adm.get("concomitant_medications") or [], "concomitant_medications")
    for i, score in enumerate(adm.get("scores") or []):
        yield from suicide_score(score["instrument"], score["value"], f"scores[{i}].value", score["at"])
    if adm["medication"] == "esketamine":
        yield from under_18(adm, adm["started_at"].date())
        yield from monitoring(adm)
        yield from course_frequency(adm, plan, course or [])
