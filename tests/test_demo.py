"""The demo data keeps the product's promise: realistic ketamine and esketamine courses, synthetic people, valid records."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

import pytest

from service.app.runtime import Runtime
from service.demo import demo_records

Record = dict[str, Any]
RECORDS = demo_records()


def of_kind(kind: str) -> list[Record]:
    return [payload for k, payload in RECORDS if k == kind]


def sessions_of(plan: Record) -> list[Record]:
    found = [s for s in of_kind("administration") if s.get("plan_external_id") == plan["external_id"]]
    return sorted(found, key=lambda s: s["session_number"])


def assessments_of(plan: Record, instrument: str) -> list[Record]:
    return [a for a in of_kind("assessment")
            if a.get("plan_external_id") == plan["external_id"] and a["instrument"] == instrument]


def at(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    assert moment.tzinfo is not None, f"{value} has no UTC offset"
    return moment


def patient_key(record: Record) -> tuple[str, str]:
    identifier = record["patient"]["identifier"]
    return identifier["system"], identifier["value"]


def test_there_are_at_least_five_distinct_patients() -> None:
    assert len({patient_key(r) for _, r in RECORDS}) >= 5


def iv_trd_induction() -> tuple[Record, list[Record]]:
    for plan in of_kind("treatment-plan"):
        if (plan["medication"], plan["route"], plan["indication"]["code"], plan.get("phase")) == (
                "ketamine", "intravenous", "trd", "induction") and len(sessions_of(plan)) == 6:
            return plan, sessions_of(plan)
    pytest.fail("no IV racemic ketamine TRD induction plan with six sessions")


def test_an_iv_ketamine_trd_induction_series_has_six_sessions_at_half_a_mg_per_kg() -> None:
    plan, sessions = iv_trd_induction()

    assert plan["dose"] == {"value": 0.5, "unit": "mg/kg"} and plan["sessions_planned"] == 6
    assert plan["prior_antidepressant_trials"] >= 2  # TRD: at least two failed trials
    assert [s["session_number"] for s in sessions] == [1, 2, 3, 4, 5, 6]
    assert all(s["status"] == "completed" and s["patient"] == plan["patient"] for s in sessions)
    assert [s["dose_mg"] / s["weight_kg"] for s in sessions] == pytest.approx([0.5] * 6)


def test_each_iv_infusion_of_the_series_lasts_forty_minutes() -> None:
    plan, sessions = iv_trd_induction()

    assert plan["infusion_minutes"] == 40
    assert [at(s["ended_at"]) - at(s["started_at"]) for s in sessions] == [timedelta(minutes=40)] * 6


def test_the_iv_series_runs_twice_weekly_for_three_weeks() -> None:
    plan, sessions = iv_trd_induction()
    starts = [at(s["started_at"]) for s in sessions]

    assert plan["frequency"] == {"count": 2, "period": 1, "period_unit": "wk"}
    assert starts == sorted(starts)
    weeks = [start.isocalendar()[:2] for start in starts]
    assert [weeks.count(week) for week in dict.fromkeys(weeks)] == [2, 2, 2]
    assert all(timedelta(days=2) <= b - a <= timedelta(days=5) for a, b in pairwise(starts))


def esketamine_titration() -> tuple[Record, list[Record]]:
    for plan in of_kind("treatment-plan"):
        doses = [s["dose_mg"] for s in sessions_of(plan)]
        if plan["medication"] == "esketamine" and doses[:1] == [56] and 84 in doses:
            return plan, sessions_of(plan)
    pytest.fail("no esketamine plan whose sessions start at 56 mg and reach 84 mg")


def test_an_esketamine_plan_titrates_from_56_to_84_mg() -> None:
    plan, sessions = esketamine_titration()
    doses = [s["dose_mg"] for s in sessions]

    assert (plan["route"], plan["dose"]) == ("intranasal", {"value": 56, "unit": "mg"})
    assert doses == sorted(doses) and (doses[0], doses[-1]) == (56, 84)
    assert all(s["medication"] == "esketamine" and s["route"] == "intranasal" for s in sessions)


def bp_readings(session: Record) -> list[tuple[datetime, str]]:
    return [(at(v["at"]), v["phase"]) for v in session["vitals"] if v.get("systolic") and v.get("diastolic")]


def test_every_esketamine_session_has_bp_before_dosing_at_forty_minutes_and_at_discharge() -> None:
    _, sessions = esketamine_titration()

    for session in sessions:
        start, discharge = at(session["started_at"]), at(session["monitoring_ended_at"])
        readings = bp_readings(session)
        assert any(phase == "pre" and moment < start for moment, phase in readings), session["external_id"]
        assert any(abs(moment - start - timedelta(minutes=40)) <= timedelta(minutes=5)
                   for moment, _ in readings), session["external_id"]
        assert any(timedelta(0) <= discharge - moment <= timedelta(minutes=15) and phase == "post"
                   for moment, phase in readings), session["external_id"]
        assert discharge - start >= timedelta(hours=2)  # the label's minimum observation


SUICIDALITY = ("suicidal-ideation", "mdd-acute-suicidality")


def test_a_patient_treated_for_suicidal_ideation_is_followed_with_cssrs_and_madrs() -> None:
    plans = [p for p in of_kind("treatment-plan") if p["indication"]["code"] in SUICIDALITY]
    assert plans, f"no plan with an indication among {SUICIDALITY}"
    plan = plans[0]
    first_session = at(sessions_of(plan)[0]["started_at"])

    for instrument in ("cssrs", "madrs"):
        scores = assessments_of(plan, instrument)
        assert len(scores) >= 2, instrument
        assert all(patient_key(a) == patient_key(plan) for a in scores)
        assert any(at(a["at"]) > first_session for a in scores), f"no {instrument} after treatment started"


def test_adverse_events_include_a_bp_rise_nausea_and_dissociation_each_tied_to_a_session() -> None:
    events = of_kind("adverse-event")
    sessions = {s["external_id"]: s for s in of_kind("administration")}

    assert {"hypertension", "nausea", "dissociation"} <= {e["term"] for e in events}
    for event in events:
        session = sessions[event["administration_external_id"]]
        assert patient_key(session) == patient_key(event)
        assert at(event["onset_at"]) >= at(session["started_at"])


SYNTHETIC = re.compile(r"test|demo|example|synthetic|fake", re.IGNORECASE)


def people(record: Record) -> list[Record]:
    return [record[k] for k in ("prescriber", "performer", "recorded_by") if k in record]


def test_every_person_is_obviously_synthetic() -> None:
    for _, record in RECORDS:
        patient = record["patient"]
        assert SYNTHETIC.search(patient["name"]["family"]), patient
        assert urlsplit(patient["identifier"]["system"]).hostname.endswith(".example")  # reserved domain
        assert SYNTHETIC.search(patient["identifier"]["value"]), patient
        for person in people(record):
            assert SYNTHETIC.search(person["name"]), person
            # NPIs are issued starting with 1 or 2; a leading 9 can never name a real clinician.
            assert person["identifier"]["value"].startswith("9"), person


def test_every_demo_record_passes_intake(runtime: Runtime) -> None:
    outcomes = [runtime.intake.submit(kind, payload) for kind, payload in demo_records()]  # raises on any error

    assert all(o.created for o in outcomes)
    assert len({o.record.id for o in outcomes}) == len(RECORDS)


def test_demo_records_are_the_same_on_every_call() -> None:
    first = demo_records()
    first[0][1]["patient"]["name"]["given"].append("Mutated")  # a caller's change must not leak

    assert demo_records() == RECORDS
    assert json.dumps(demo_records()) == json.dumps(RECORDS)


def test_demo_records_do_not_depend_on_the_machine_time_zone_or_hash_seed() -> None:
    code = "import json; from service.demo import demo_records; print(json.dumps(demo_records()))"
    env = os.environ | {"TZ": "Pacific/Chatham", "PYTHONHASHSEED": "12345"}

    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         timeout=60).stdout

    assert json.loads(out) == json.loads(json.dumps(RECORDS))
