"""Domain API v1: clinic records in, as DOMAIN.md's Endpoints section describes."""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from datetime import date, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from service.app.runtime import Runtime
from service.domain.intake import stale
from service.domain.kinds import BY_PLURAL, Kind, utc_naive
from service.errors import BadRequest, Issue, PreconditionFailed, PreconditionRequired
from service.store.records import ListQuery, StoredRecord
from service.web import auth
from service.web.body import json_body

bp = Blueprint("domain_api", __name__, url_prefix="/api/v1")
KIND_SEGMENT = "<any(" + ", ".join(f'"{p}"' for p in BY_PLURAL) + "):plural>"
ETAG = re.compile(r'^(W/)?"(\d+)"$')
FHIR_JSON = "application/fhir+json"
MAX_KEY = 2**31 - 1


def _runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["kfhir"]
    return runtime


def _kind(plural: str) -> Kind:
    return BY_PLURAL[plural]


def _body() -> Any:
    s = _runtime().settings
    return json_body(request, s.max_body_bytes, s.max_json_depth)


def etag(record: StoredRecord) -> str:
    return f'W/"{record.version}"'


def represent(record: StoredRecord) -> dict[str, Any]:
    """The record as the API shows it: server-managed fields beside, never inside, `record`."""
    return {
        "id": record.id, "kind": record.kind, "version": record.version,
        "external_id": record.external_id, "source": record.source,
        "created_at": record.created_at.isoformat() + "Z", "updated_at": record.updated_at.isoformat() + "Z",
        "warnings": record.warnings, "record": record.content,
    }


def _answer(record: StoredRecord, status: int) -> Response:
    response = jsonify(represent(record))
    response.status_code = status
    response.headers["ETag"] = etag(record)
    response.headers["Location"] = url_for("domain_api.read", plural=BY_PLURAL_OF[record.kind], record_id=record.id)
    return response


BY_PLURAL_OF = {k.name: p for p, k in BY_PLURAL.items()}


@bp.post(f"/{KIND_SEGMENT}")
def create(plural: str) -> Response:
    outcome = _runtime().intake.submit(_kind(plural).name, _body(), auth.author())
    return _answer(outcome.record, 201 if outcome.created else 200)


@bp.get(f"/{KIND_SEGMENT}/<record_id>")
def read(plural: str, record_id: str) -> Response:
    return _answer(_runtime().intake.get(_kind(plural).name, record_id), 200)


@bp.put(f"/{KIND_SEGMENT}/<record_id>")
def replace(plural: str, record_id: str) -> Response:
    kind = _kind(plural)
    if_match = request.headers.get("If-Match")
    if if_match is None:
        raise PreconditionRequired("Send If-Match with the ETag you read, so no concurrent change is lost.")
    current = _runtime().intake.get(kind.name, record_id)
    # RFC 9110 §13.2.1: preconditions are judged before the request content is.
    match = ETAG.match(if_match.strip())
    if if_match.strip() == "*":  # any current version will do
        expected = current.version
    elif match is None:
        raise PreconditionFailed(f"If-Match {if_match!r} is not an ETag this API issued (like W/\"1\").",
                                 current_version=current.version)
    else:
        expected = int(match.group(2))
    if expected != current.version:
        raise stale(current, expected)
    outcome = _runtime().intake.replace(kind.name, record_id, expected, _body(), auth.author())
    return _answer(outcome.record, 200)


@bp.get(f"/{KIND_SEGMENT}/<record_id>/versions")
def versions(plural: str, record_id: str) -> Response:
    record = _runtime().intake.get(_kind(plural).name, record_id)
    items = [v | {"created_at": v["created_at"].isoformat() + "Z"} for v in _runtime().store.versions(record)]
    return jsonify(id=record.id, versions=items)


@bp.get(f"/{KIND_SEGMENT}/<record_id>/fhir")
def as_fhir(plural: str, record_id: str) -> Response:
    """The transaction Bundle the stored record maps to (the same engine the exchange uses)."""
    from service.mapping import map_record

    record = _runtime().intake.get(_kind(plural).name, record_id)
    mapped = map_record(record.kind, record.content)
    response = Response(json.dumps(mapped.bundle, ensure_ascii=False), status=200, mimetype=FHIR_JSON)
    response.headers["ETag"] = etag(record)
    return response


@bp.post(f"/preview/{KIND_SEGMENT}")
def preview(plural: str) -> Response:
    """Check and map a record without storing it: the Bundle, its validation outcome, the record's warnings."""
    from service.mapping import map_record

    checked = _runtime().intake.check(_kind(plural).name, _body())
    mapped = map_record(checked.kind.name, checked.new.content)
    body = {"kind": checked.kind.name, "bundle": mapped.bundle, "outcome": mapped.outcome,
            "warnings": checked.warnings}
    # the standard library keeps FHIR's element order (Flask's JSON sorts keys)
    return Response(json.dumps(body, ensure_ascii=False), status=200, mimetype="application/json")


@bp.get(f"/{KIND_SEGMENT}")
def search(plural: str) -> Response:
    kind = _kind(plural)
    query = _list_query(kind, request.args)
    # One more than asked for tells whether another page exists, so `next` never leads to an empty page.
    page = _runtime().store.list(dataclasses.replace(query, limit=query.limit + 1))
    following = None
    if len(page) > query.limit:
        page = page[: query.limit]
        args: dict[str, Any] = request.args.to_dict() | {"cursor": _cursor(page[-1].pk)}
        following = url_for("domain_api.search", plural=plural, **args)
    return jsonify(items=[represent(r) for r in page], count=len(page), next=following)


LIST_PARAMS = {"patient_identifier", "date_from", "date_to", "limit", "cursor"}


def _list_query(kind: Kind, args: Any) -> ListQuery:
    unknown = sorted(set(args) - LIST_PARAMS)
    if unknown:
        allowed = f"not one of {sorted(LIST_PARAMS)}"
        raise BadRequest("Unknown query parameter.", [Issue(name, allowed) for name in unknown])
    system, value = _patient(args.get("patient_identifier"))
    settings = _runtime().settings
    limit = _int_param(args, "limit", settings.page_size, 1, 500)
    date_from = _date_param(args, "date_from", end=False)
    date_to = _date_param(args, "date_to", end=True)
    after = _uncursor(args["cursor"]) if "cursor" in args else 0
    return ListQuery(kind.name, system, value, date_from, date_to, after, limit)


def _patient(raw: str | None) -> tuple[str | None, str | None]:
    """`system|value` or a bare `value`, as FHIR token search writes identifiers."""
    if raw is None:
        return None, None
    system, bar, value = raw.rpartition("|")
    if not value:
        raise BadRequest("patient_identifier needs a value.",
                         [Issue("patient_identifier", "use system|value or value")])
    return (system if bar else None), value


def _int_param(args: Any, name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:  # int('²') raises
        raise BadRequest(f"{name} must be an integer from {low} to {high}.", [Issue(name, f"got {raw!r}")])
    return int(raw)


def _date_param(args: Any, name: str, end: bool) -> datetime | None:
    """A date (whole day, inclusive) or a datetime with a UTC offset, as a UTC bound."""
    raw = args.get(name)
    if raw is None:
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return utc_naive(day + timedelta(days=1) if end else day)
        moment = datetime.fromisoformat(raw.replace(" ", "+"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise BadRequest(f"{name} must be YYYY-MM-DD or an ISO 8601 datetime with a UTC offset.",
                         [Issue(name, f"got {raw!r}")])
    bound = utc_naive(moment)
    return bound + timedelta(microseconds=1) if end else bound


def _cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(f"pk:{pk}".encode()).decode().rstrip("=")


def _uncursor(raw: str) -> int:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        number = text.removeprefix("pk:")
        # keys are INTEGER columns: a larger number is no key of ours (and PostgreSQL would refuse it)
        if text.startswith("pk:") and number.isascii() and number.isdigit() and int(number) <= MAX_KEY:
            return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise BadRequest("cursor is not one this API issued; follow the `next` link.", [Issue("cursor", "invalid")])

