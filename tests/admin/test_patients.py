"""Patient pages: search by identifier, and a course with its plans, sessions, charts, events and warnings."""
from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from factories import PATIENT, adverse_event, assessment, esketamine_plan, esketamine_session
from flask import Flask
from flask.testing import FlaskClient

from service.admin.course import course
from service.web.admin.charts import TOP, heart_rate_chart, score_charts, vitals_chart

SYSTEM, VALUE = PATIENT["identifier"]["system"], PATIENT["identifier"]["value"]
COURSE = "/admin/patients/course?" + urlencode({"system": SYSTEM, "value": VALUE})
VITALS = [{"at": "2026-03-02T08:50:00-05:00", "phase": "pre", "systolic": 150, "diastolic": 95, "heart_rate": 80},
          {"at": "2026-03-02T09:40:00-05:00", "phase": "post", "systolic": 166, "diastolic": 99, "heart_rate": 92},
          {"at": "2026-03-02T11:00:00-05:00", "phase": "post", "systolic": 138, "diastolic": 86}]


def _seed(app: Flask) -> None:
    """An esketamine plan (MADRS goal, baseline 30), two sessions sent out of order, scores, an adverse event."""
    intake = app.extensions["kfhir"].intake
    intake.submit("treatment-plan", esketamine_plan(goals=[{"measure": "madrs", "target": "response", "baseline": 30}]))
    intake.submit("administration", esketamine_session(
        external_id="esk-2", session_number=2, dose_mg=84, started_at="2026-03-05T09:00:00-05:00",
        ended_at="2026-03-05T09:10:00-05:00", monitoring_ended_at="2026-03-05T11:05:00-05:00",
        vitals=[{"at": "2026-03-05T08:50:00-05:00", "phase": "pre", "systolic": 128, "diastolic": 80}]))
    intake.submit("administration", esketamine_session(vitals=VITALS))
    for n, (score, at) in enumerate(((30, "2026-03-01T10:00:00-05:00"), (12, "2026-03-06T10:00:00-05:00"))):
        intake.submit("assessment", assessment(external_id=f"asmt-{n}", instrument="madrs", score=score, at=at))
    intake.submit("adverse-event", adverse_event(administration_external_id="esk-1", term="hypertension",
                                                 onset_at="2026-03-02T09:35:00-05:00"))


def page(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.get_data(as_text=True)


def test_patient_pages_need_sign_in(client: FlaskClient, app: Flask) -> None:
    _seed(app)
    for path in ("/admin/patients?identifier=MRN", COURSE):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/sign-in" in response.headers["Location"]


def test_the_search_finds_patients_by_part_of_their_identifier(admin: FlaskClient, app: Flask) -> None:
    _seed(app)
    app.extensions["kfhir"].intake.submit("assessment", assessment(
        external_id="other", patient=PATIENT | {"identifier": {"system": SYSTEM, "value": "MRN-0012"}}))

    found = page(admin, "/admin/patients?identifier=mrn-001")

    assert "2 patients with an identifier containing" in found
    assert found.index(">MRN-001</a>") < found.index(">MRN-0012</a>")  # the exact match first
    assert f'href="/admin/patients/course?system={SYSTEM}&amp;value={VALUE}"' in found and "Zulu Testpatient" in found


def test_search_wildcards_are_literal_and_nothing_found_is_said(admin: FlaskClient, app: Flask) -> None:
    _seed(app)

    assert "No patient has an identifier containing" in page(admin, "/admin/patients?identifier=%25")
    assert "No patient has an identifier containing" in page(admin, "/admin/patients?identifier=MRN_001")
    assert "Search by the identifier" in page(admin, "/admin/patients")


def test_an_overlong_search_is_refused_plainly(admin: FlaskClient) -> None:
    assert "at most 200 characters" in page(admin, "/admin/patients?identifier=" + "x" * 201, 400)


def test_a_course_lists_plans_and_sessions_in_order_with_dose_and_route(admin: FlaskClient, app: Flask) -> None:
    _seed(app)

    found = page(admin, COURSE)

    assert "Course of Zulu Testpatient (MRN-001)" in found
    assert "<code>plan-1</code>" in found and "madrs response (baseline 30)" in found
    rows = re.findall(r'<tr><th scope="row" class="num">(\d+)</th>.*?<td class="num">(\d+)</td>', found, re.S)
    assert rows == [("1", "56"), ("2", "84")]  # by start time, not by arrival
    assert "<td>intranasal</td>" in found


def test_a_course_shows_the_current_patient_not_the_last_records(admin: FlaskClient, app: Flask) -> None:
    """The last record to arrive is an older one with an older name and no birth date: the page shows the Patient
    as now known (issue 16 step 5: the newest record giving each field wins, nothing known is blanked)."""
    _seed(app)
    old = {"identifier": PATIENT["identifier"], "name": {"family": "Maiden", "given": ["Zulu"]}}
    app.extensions["kfhir"].intake.submit("assessment", assessment(external_id="asmt-late", patient=old,
                                                                   at="2025-12-01T10:00:00+00:00"))

    found = page(admin, COURSE)

    assert "Course of Zulu Testpatient (MRN-001)" in found and "Maiden" not in found
    assert "<dt>Birth date</dt><dd>1980-05-17</dd>" in found


def test_the_search_lists_the_current_patient_not_the_last_records(admin: FlaskClient, app: Flask) -> None:
    """As the course page: the last record to arrive is an older one with an older name, and another patient's
    only record gives no name at all: the list shows each Patient as now known."""
    _seed(app)
    intake = app.extensions["kfhir"].intake
    intake.submit("assessment", assessment(external_id="asmt-late", at="2025-12-01T10:00:00+00:00", patient={
        "identifier": PATIENT["identifier"], "name": {"family": "Maiden", "given": ["Zulu"]}}))
    unnamed = {"identifier": {"system": SYSTEM, "value": "MRN-0019"}}
    intake.submit("assessment", assessment(external_id="named", patient=unnamed | {"name": {"family": "Yankee"}}))
    intake.submit("assessment", assessment(external_id="bare", at="2026-03-08T10:00:00+00:00", patient=unnamed))

    found = page(admin, "/admin/patients?identifier=mrn-001")

    assert "2 patients with an identifier containing" in found
    assert "Zulu Testpatient" in found and "Maiden" not in found
    assert "Yankee" in found and "(no name recorded)" not in found


def test_a_course_draws_vitals_and_scores_as_svg_with_thresholds(admin: FlaskClient, app: Flask) -> None:
    _seed(app)

    found = page(admin, COURSE)

    vitals = found[found.index('<svg id="vitals-chart"'):found.index("</svg>", found.index('<svg id="vitals-chart"'))]
    assert "<title id=\"vitals-chart-title\">" in vitals and "<desc" in vitals
    values = re.findall(r'<g class="point" data-value="(\d+)">', vitals)
    assert sorted(values) == sorted(["150", "95", "166", "99", "138", "86", "128", "80"])  # systolic, diastolic
    heart = found[found.index('<svg id="heart-rate-chart"'):found.index("</svg>", found.index('<svg id="heart-rate'))]
    assert sorted(re.findall(r'<g class="point" data-value="(\d+)">', heart)) == ["80", "92"]
    assert "systolic 140: esketamine guide" in vitals and "AE: hypertension" in vitals
    madrs = found[found.index('<svg id="score-chart-madrs"'):]
    assert re.findall(r'<g class="point" data-value="(\d+)">', madrs)[:2] == ["30", "12"]
    assert "response ≤ 15 (50% of 30)" in madrs and "remission ≤ 10 (KetECT)" in madrs
    assert 'id="vitals-table"' in found and 'id="scores-table"' in found  # the data without the chart
    links = re.findall(r'<a href="(/admin/records/[a-z-]+/[0-9a-f-]{36})">', found)
    assert len(links) == 6  # plan, two sessions, two assessments, the adverse event: each record's way on
    record = page(admin, links[0])
    assert 'id="resources-table"' in record and "CarePlan/" in record
    again = page(admin, links[0])  # the first read is now in the record's audit trail
    assert 'id="record-audit-table"' in again and "admin:alice" in again


def test_a_course_shows_adverse_events_on_the_timeline_and_the_warnings(admin: FlaskClient, app: Flask) -> None:
    _seed(app)

    found = page(admin, COURSE)

    timeline = found[found.index('<ol class="timeline">'):found.index("</ol>", found.index('<ol class="timeline">'))]
    order = [timeline.index(s) for s in ("madrs 30", "session 1:", "adverse event: hypertension", "session 2:",
                                         "madrs 12")]
    assert order == sorted(order)
    warnings = found[found.index('id="warnings-table"'):]
    assert "pre-dose blood pressure 150/95 mmHg is above 140/90" in warnings and "esketamine-predose-bp" in warnings


def test_an_unknown_patient_is_a_404_and_a_half_named_one_a_400(admin: FlaskClient) -> None:
    assert "No record names a patient" in page(admin, COURSE, 404)
    assert "both" in page(admin, "/admin/patients/course?system=x", 400)


def test_the_course_core_orders_sessions_and_finds_baselines(app: Flask) -> None:
    _seed(app)

    built = course(app.extensions["kfhir"].engine, SYSTEM, VALUE)

    assert built is not None
    assert [s.number for s in built.sessions] == [1, 2]
    assert [r.phase for r in built.sessions[0].readings] == ["pre", "post", "post"]
    assert built.baseline("madrs") == 30 and built.baseline("phq9") is None
    assert course(app.extensions["kfhir"].engine, SYSTEM, "nobody") is None


def test_charts_put_higher_values_higher_and_skip_what_is_missing(app: Flask) -> None:
    _seed(app)
    built = course(app.extensions["kfhir"].engine, SYSTEM, VALUE)
    assert built is not None

    chart = vitals_chart(built)
    assert chart is not None
    systolic = chart.series[0].lines[0]
    assert [p.value for p in systolic] == ["150", "166", "138"]
    assert systolic[1].y < systolic[0].y < systolic[2].y  # SVG y grows downwards
    assert [s.key for s in chart.series] == ["systolic", "diastolic"]  # heart rate has its own chart
    rate = heart_rate_chart(built)
    assert rate is not None
    heart = rate.series[0].lines[0]
    assert [p.value for p in heart] == ["80", "92"]  # the third reading has no heart rate
    assert [label for _, label in chart.x_ticks] == ["pre", "post", "post 2", "pre"]  # a repeated phase numbered
    assert [c.id for c in score_charts(built)] == ["score-chart-madrs"]


def test_a_ham_d17_chart_draws_remission_at_7_on_its_0_to_52_scale(app: Flask) -> None:
    """clinical.md §3: HAM-D17 totals run 0–52 and remission is a score of 7 or less (§6 too)."""
    intake = app.extensions["kfhir"].intake
    for n, (score, at) in enumerate(((26, "2026-03-01T10:00:00-05:00"), (6, "2026-03-20T10:00:00-05:00"))):
        intake.submit("assessment", assessment(external_id=f"ham-{n}", instrument="hamd17", score=score, at=at))
    built = course(app.extensions["kfhir"].engine, SYSTEM, VALUE)
    assert built is not None

    (chart,) = score_charts(built)

    assert chart.id == "score-chart-hamd17"
    assert [rule.label for rule in chart.thresholds if rule.key == "remission"] == ["remission ≤ 7"]
    a, b = chart.scale
    assert a * 52 + b == pytest.approx(TOP)  # the scale's top is HAM-D17's maximum, not the highest score


def test_many_sessions_keep_their_labels_apart(app: Flask) -> None:
    intake = app.extensions["kfhir"].intake
    for n in range(1, 25):
        day = f"2026-03-{n + 1:02d}"
        intake.submit("administration", esketamine_session(
            external_id=f"esk-{n}", session_number=n, started_at=f"{day}T09:00:00-05:00",
            ended_at=f"{day}T09:10:00-05:00", monitoring_ended_at=f"{day}T11:05:00-05:00",
            vitals=[{"at": f"{day}T08:50:00-05:00", "phase": "pre", "systolic": 120, "diastolic": 80}]))
    built = course(app.extensions["kfhir"].engine, SYSTEM, VALUE)
    assert built is not None

    chart = vitals_chart(built)

    assert chart is not None and len(chart.bands) == 24
    labelled = [x0 for x0, _, label in chart.bands if label]
    assert 1 < len(labelled) < 24 and min(b - a for a, b in zip(labelled, labelled[1:], strict=False)) >= 60
    assert chart.x_ticks == []  # no room for pre/intra/post under each reading
