"""The console's audit page (who read or changed what, API clients and admins alike), and the hook that
puts the console's own patient-data reads and actions into the same trail."""
from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import render_template, request, url_for

from service.admin import audit
from service.admin import course as courses
from service.admin.accounts import LOCKOUT, MAX_FAILURES
from service.errors import BadRequest
from service.params import date_range, parse_integer
from service.security.audit import AuditLog, AuditQuery, Entity
from service.web import current
from service.web.admin import bp
from service.web.auth import security

PAGE = 50
MAX_PATIENT = 200
#: matches no event: a patient filter that names nobody lists nothing (not everything)
NOBODY = "-"


def audit_log() -> AuditLog:
    return security().audit


def note(interaction: str, what: list[Entity], patients: list[tuple[str, str]] | None = None,
         query: str | None = None, status: int = 200, description: str | None = None) -> None:
    """Record what the signed-in admin just did or read, with its real outcome (a check that failed is a
    failure: `status` and `description` say so)."""
    user = str(request.environ.get("kfhir.admin_user", "?"))
    audit.record_admin(audit_log(), user, interaction, status, console_address(), request.remote_addr, what, patients,
                       query, description)


def authenticated(username: str, ok: bool, locked_until: datetime | None, now: datetime) -> None:
    """Record a sign-in attempt made at `now`: success, a failure, the failure that locked the username, or a
    refusal while it was locked (a lock this attempt earned ends exactly LOCKOUT after `now`)."""
    if ok:
        status, words = 200, "signed in"
    elif locked_until is None:
        status, words = 401, "failed sign-in: wrong username or password"
    elif locked_until == now + LOCKOUT:
        status, words = 401, f"lockout: {MAX_FAILURES} failed sign-ins; locked until {locked_until:%Y-%m-%d %H:%M} UTC"
    else:
        status, words = 401, f"refused: the username is locked until {locked_until:%Y-%m-%d %H:%M} UTC"
    audit.record_authentication(audit_log(), username, False, status, words, console_address(), request.remote_addr)


def signed_out(username: str) -> None:
    audit.record_authentication(audit_log(), username, True, 200, "signed out", console_address(), request.remote_addr)


def console_address() -> str:
    """The console's address for the audit's server agent: from KFHIR_BASE_URL, never a Host header a caller
    chose (as the API's fullUrl and links)."""
    return current.public_root() + "/admin"


@bp.get("/audit")
def audit_trail() -> tuple[str, int]:
    args = request.args
    query, errors = _query(args)
    events, total = audit_log().search(query) if not errors else ([], 0)
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
    hashes: tuple[str, ...] = ()
    if len(patient) > MAX_PATIENT:
        errors.append(f"A patient identifier is at most {MAX_PATIENT} characters.")
    elif patient:
        hashes = _patients(patient) or (NOBODY,)
    try:
        offset = parse_integer("offset", args.get("offset", "0"), 0, 10**9)
    except BadRequest:
        errors.append("`offset` must be a number.")
        offset = 0
    return AuditQuery(since=since, until=until, agent=(args.get("agent") or "").strip() or None,
                      entity_type=(args.get("entity_type") or "").strip() or None, action=action,
                      patient_hashes=hashes, count=PAGE, offset=offset, newest_first=True), errors


def _patients(text: str) -> tuple[str, ...]:
    """The keyed hashes of every patient whose identifier `text` names: `system|value` exactly, or any part of
    the value (as the Patients page searches), within `system` when one is given."""
    system, bar, value = text.rpartition("|")
    found = {audit_log().patient_hash(system, value)} if bar and system and value else set()
    for hit in courses.search(current.runtime().engine, value or text):
        if not system or hit.system == system:
            found.add(audit_log().patient_hash(hit.system, hit.value))
    return tuple(sorted(found))
