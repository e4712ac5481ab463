"""The console's record pages: each kind's records with a search, and one record with its FHIR resources, its
outbox jobs per endpoint, its patient and its audit trail."""
from __future__ import annotations

from flask import abort, render_template, request

from service.admin import audit, records
from service.domain.kinds import KINDS
from service.errors import BadRequest
from service.params import parse_integer
from service.security.audit import Entity
from service.web import current
from service.web.admin import bp
from service.web.admin.audit_page import note

MAX_QUERY = 200


@bp.get("/records/<kind>")
def record_list(kind: str) -> tuple[str, int]:
    if kind not in KINDS:
        abort(404, f"There is no record kind {kind!r}; the kinds are {', '.join(KINDS)}.")
    text = request.args.get("q", "").strip()
    try:
        offset = parse_integer("offset", request.args.get("offset", "0"), 0, 10**9)
    except BadRequest:
        abort(400, "`offset` must be a whole number, 0 or more.")
    if len(text) > MAX_QUERY:
        abort(400, f"A search is at most {MAX_QUERY} characters.")
    found, total = records.listing(current.runtime().engine, kind, text, offset)
    note("search-type", [Entity(kind, record=True)], query="parameters: " + ("q" if text else "none"))
    return render_template("admin/records.html", kind=kind, kinds=KINDS, rows=found, total=total, q=text,
                           offset=offset, page=records.PAGE), 200


@bp.get("/records/<kind>/<record_id>")
def record_page(kind: str, record_id: str) -> str:
    if kind not in KINDS or len(record_id) > 36:
        abort(404, f"There is no {kind} record {record_id}.")
    found = records.detail(current.runtime().engine, kind, record_id)
    if found is None:
        abort(404, f"There is no {kind} record {record_id}.")
    line = found.line
    trail = audit.mentioning(current.runtime().engine, [record_id] + [f"{x.type}/{x.id}" for x in found.resources])
    note("read", [Entity(kind, record_id, record=True)], [(line.patient_system, line.patient_value)])
    # endpoints taking this kind with no job for the current version, and why (added since, disabled then)
    unqueued = {e.name: e.why_not_queued(line.updated_at) for e in current.runtime().endpoints.all()
                if kind in e.kinds and not any(j.record_version == line.version for j in found.jobs.get(e.name, []))}
    return render_template("admin/record.html", r=found, line=line, audit_rows=trail, unqueued=unqueued)
