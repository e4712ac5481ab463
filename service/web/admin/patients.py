"""The console's patient pages: search by identifier, and one patient's course with its charts."""
from __future__ import annotations

from flask import abort, render_template, request

from service.admin import course as courses
from service.security.audit import Entity
from service.web import current
from service.web.admin import bp, charts
from service.web.admin.audit_page import note

#: Longest identifier text a search takes: MRNs are short; anything longer is a mistake, not a search.
MAX_QUERY = 200


@bp.get("/patients")
def patients() -> tuple[str, int]:
    query = request.args.get("identifier", "").strip()
    if len(query) > MAX_QUERY:
        return render_template("admin/patients.html", query=query[:MAX_QUERY], hits=None,
                               error=f"An identifier is at most {MAX_QUERY} characters."), 400
    hits = courses.search(current.runtime().engine, query) if query else None
    if hits is not None:
        note("search-type", [Entity("Patient")], query="parameters: identifier")
    return render_template("admin/patients.html", query=query, hits=hits, error=None), 200


@bp.get("/patients/course")
def patient_course() -> str:
    system, value = request.args.get("system", ""), request.args.get("value", "")
    if not system or not value:
        abort(400, "A patient is named by its identifier: both `system` and `value` are needed.")
    found = courses.course(current.runtime().engine, system, value)
    if found is None:
        abort(404, f"No record names a patient with identifier {system}|{value}.")
    note("read", [Entity("patient course")], [(system, value)])
    return render_template("admin/course.html", course=found, vitals=charts.vitals_chart(found),
                           heart=charts.heart_rate_chart(found),
                           scores=charts.score_charts(found), timeline=found.timeline())
