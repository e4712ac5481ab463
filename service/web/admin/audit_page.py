"""The console's audit page (who read or changed what, API clients and admins alike), and the hook that
puts the console's own patient-data reads and actions into the same trail."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import render_template, request, url_for

from service.admin import audit
from service.errors import BadRequest
from service.params import date_range, parse_integer
from service.security.audit import AuditLog, AuditQuery, Entity
from service.web.admin import bp
from service.web.auth import security

PAGE = 50


def _log() -> AuditLog:
    return security().audit


def note(interaction: str, what: list[Entity], patients: list[tuple[str, str]] | None = None,
         query: str | None = None, status: int = 200) -> None:
    """Record what the signed-in admin just did or read (views call this after the work succeeded)."""
    user = str(request.environ.get("kfhir.admin_user", "?"))
    audit.record_admin(_log(), user, interaction, status, request.host_url.rstrip("/") + "/admin",
                       request.remote_addr, what, patients, query)


@bp.get("/audit")
def audit_trail() -> tuple[str, int]:
    args = request.args
    query, errors = _query(args)
    events, total = _log().search(query) if not errors else ([], 0)
    if not errors:  # reading the trail is itself an access to audit (as GET /fhir/AuditEvent is)
        note("search-type", [Entity("AuditEvent")], query="parameters: " + (", ".join(sorted(args)) or "none"))
    following = None
    if not errors and query.offset + len(events) < total:
        following = url_for("admin.audit_trail") + "?" + urlencode(args.to_dict() | {"offset": query.offset + PAGE})
    return render_template("admin/audit.html", rows=[audit.row(e) for e in events], total=total, args=args,
                           errors=errors, next_url=following, actions=audit.ACTIONS), 400 if errors else 200


def _query(args: Any) -> tuple[AuditQuery, list[str]]:
    errors: list[str] = []
    since = until = None
    for name in ("since", "until"):
        if args.get(name):
            found = date_range(args[name])  # a day: from its first instant, until its last
            if found is None:
                errors.append(f"`{name}` must be a day like 2026-03-02.")
                continue
            since, until = (found[0], until) if name == "since" else (since, found[1])
    action = args.get("action") or None
    if action is not None and action not in audit.ACTIONS:
        errors.append("The action must be one of " + ", ".join(audit.ACTIONS) + ".")
    patient = (args.get("patient") or "").strip()
    patient_hash = None
    if patient:
        system, bar, value = patient.rpartition("|")
        if not bar or not system or not value:
            errors.append("A patient is named system|value, e.g. https://clinic.example/mrn|MRN-001.")
        else:
            patient_hash = _log().patient_hash(system, value)
    try:
        offset = parse_integer("offset", args.get("offset", "0"), 0, 10**9)
    except BadRequest:
        errors.append("`offset` must be a number.")
        offset = 0
    return AuditQuery(since=since, until=until, agent=(args.get("agent") or "").strip() or None,
                      entity_type=(args.get("entity_type") or "").strip() or None, action=action,
                      patient_hash=patient_hash, count=PAGE, offset=offset, newest_first=True), errors
