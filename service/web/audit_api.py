"""GET /fhir/AuditEvent (search: date, agent, entity-type, action; paging) and GET /fhir/AuditEvent/{id}.

Read only: nothing writes AuditEvents but the server. Clients need `system/AuditEvent.rs` (the wildcard
`system/*` does not reach the audit trail, see service/security/scopes.py).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from urllib.parse import urlencode

from flask import Blueprint, Response, request

from service.errors import BadRequest, Issue, NotFound
from service.params import date_range, integer
from service.security.audit import AuditQuery
from service.web import current
from service.web.auth import security

bp = Blueprint("audit_api", __name__, url_prefix="/fhir/AuditEvent")
FHIR_JSON = "application/fhir+json"
PARAMS = {"date", "agent", "entity-type", "action", "_count", "_offset", "_format", "_pretty"}
MAX_COUNT = 200
TICK = timedelta(microseconds=1)


@bp.get("")
def search() -> Response:
    query = _query()
    events, total = security().audit.search(query)
    base = current.public_root() + "/fhir/AuditEvent"
    kept = [(k, v) for k, v in request.args.items(multi=True) if k not in ("_offset", "_count")]

    def url(offset: int) -> str:
        return f"{base}?{urlencode(kept + [('_count', str(query.count)), ('_offset', str(offset))])}"

    links = [{"relation": "self", "url": url(query.offset)}]
    if query.offset + len(events) < total:
        links.append({"relation": "next", "url": url(query.offset + query.count)})
    if query.offset > 0:
        links.append({"relation": "previous", "url": url(max(0, query.offset - query.count))})
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links,
              "entry": [{"fullUrl": f"{base}/{e['id']}", "resource": e, "search": {"mode": "match"}} for e in events]}
    return Response(json.dumps(bundle, ensure_ascii=False), status=200, mimetype=FHIR_JSON)


@bp.get("/<event_id>")
def read(event_id: str) -> Response:
    found = security().audit.get(event_id)
    if found is None:
        raise NotFound(f"AuditEvent/{event_id} is not known to this server.")
    return Response(json.dumps(found, ensure_ascii=False), status=200, mimetype=FHIR_JSON)


def _query() -> AuditQuery:
    args = request.args
    unknown = sorted(set(args) - PARAMS)
    if unknown:
        raise BadRequest(f"AuditEvent is searchable by {', '.join(sorted(PARAMS - {'_format', '_pretty'}))}.",
                         [Issue(n, "not supported") for n in unknown])
    since, until = _dates(args.getlist("date"))
    action = args.get("action")
    if action is not None and action not in ("C", "R", "U", "D", "E"):
        raise BadRequest("action is one of C, R, U, D, E.", [Issue("action", f"got {action!r}")])
    return AuditQuery(since=since, until=until, agent=args.get("agent") or None,
                      entity_type=(args.get("entity-type") or "").rpartition("|")[2] or None, action=action,
                      count=integer(args, "_count", 50, 1, MAX_COUNT), offset=integer(args, "_offset", 0, 0, 10**9))


def _dates(values: list[str]) -> tuple[datetime | None, datetime | None]:
    """`date=ge2026-11-01&date=lt2026-12-01`: the bounds as naive UTC (eq: the value's whole range)."""
    since: datetime | None = None
    until: datetime | None = None
    for raw in values:
        prefix, text = (raw[:2], raw[2:]) if raw[:2] in ("eq", "lt", "le", "gt", "ge") else ("eq", raw)
        found = date_range(text.replace(" ", "+"))
        if found is None:
            raise BadRequest("date must be a FHIR date or instant with an optional prefix eq, lt, le, gt, ge.",
                             [Issue("date", f"got {raw!r}")])
        low, high = found
        if prefix in ("eq", "ge", "gt"):
            since = max(filter(None, (since, _after(high) if prefix == "gt" else low)))
        if prefix in ("eq", "le", "lt"):
            until = min(filter(None, (until, _before(low) if prefix == "lt" else high)))
    return since, until


def _after(moment: datetime) -> datetime:
    return moment + TICK if moment < datetime.max else moment


def _before(moment: datetime) -> datetime:
    return moment - TICK if moment > datetime.min else moment

