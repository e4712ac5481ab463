"""Domain API v1: clinic records in, as ../shared/design/DOMAIN.md's Endpoints section describes."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from service.config import MAX_PAGE_SIZE
from service.domain.findings import findings_of
from service.domain.intake import stale
from service.domain.kinds import BY_PLURAL, KINDS, Kind
from service.errors import BadRequest, Issue, PreconditionFailed, PreconditionRequired
from service.fhirjson import etag, etag_version
from service.params import cursor, date_bound, integer, uncursor
from service.store.records import ListQuery, StoredRecord
from service.web import auditing, auth, current

bp = Blueprint("domain_api", __name__, url_prefix="/api/v1")
KIND_SEGMENT = "<any(" + ", ".join(f'"{p}"' for p in BY_PLURAL) + "):plural>"
FHIR_JSON = "application/fhir+json"


def _kind(plural: str) -> Kind:
    return BY_PLURAL[plural]


def represent(record: StoredRecord) -> dict[str, Any]:
    """The record as the API shows it: server-managed fields beside, never inside, `record`."""
    return {
        "id": record.id, "kind": record.kind, "version": record.version,
        "external_id": record.external_id, "source": record.source,
        "created_at": record.created_at.isoformat() + "Z", "updated_at": record.updated_at.isoformat() + "Z",
        "warnings": record.warnings, "findings": findings_of(record.warnings), "record": record.content,
    }


def _answer(record: StoredRecord, status: int) -> Response:
    body = represent(record)
    response = jsonify(body)
    response.status_code = status
    response.headers["ETag"] = etag(record.version)
    response.headers["Location"] = url_for("domain_api.read", plural=KINDS[record.kind].plural, record_id=record.id)
    return auditing.shown(response, body)  # the audit event reads the record from here, not the answer parsed again


@bp.post(f"/{KIND_SEGMENT}")
def create(plural: str) -> Response:
    outcome = current.runtime().intake.submit(_kind(plural).name, current.body(), auth.author())
    return _answer(outcome.record, 201 if outcome.created else 200)


@bp.get(f"/{KIND_SEGMENT}/<record_id>")
def read(plural: str, record_id: str) -> Response:
    return _answer(current.runtime().intake.get(_kind(plural).name, record_id), 200)


@bp.put(f"/{KIND_SEGMENT}/<record_id>")
def replace(plural: str, record_id: str) -> Response:
    kind = _kind(plural)
    if_match = request.headers.get("If-Match")
    if if_match is None:
        raise PreconditionRequired("Send If-Match with the ETag you read, so no concurrent change is lost.")
    record = current.runtime().intake.get(kind.name, record_id)
    # RFC 9110 §13.2.1: preconditions are judged before the request content is.
    expected = record.version if if_match.strip() == "*" else etag_version(if_match)  # "*": any current version
    if expected is None:
        raise PreconditionFailed(f"If-Match {if_match!r} is not an ETag this API issued (like W/\"1\").",
                                 current_version=record.version)
    if expected != record.version:
        raise stale(record, expected)
    outcome = current.runtime().intake.replace(kind.name, record_id, expected, current.body(), auth.author())
    return _answer(outcome.record, 200)


@bp.get(f"/{KIND_SEGMENT}/<record_id>/versions")
def versions(plural: str, record_id: str) -> Response:
    record = current.runtime().intake.get(_kind(plural).name, record_id)
    items = [v | {"created_at": v["created_at"].isoformat() + "Z"} for v in current.runtime().store.versions(record)]
    return jsonify(id=record.id, versions=items)


@bp.get(f"/{KIND_SEGMENT}/<record_id>/fhir")
def as_fhir(plural: str, record_id: str) -> Response:
    """The transaction Bundle the stored record maps to (the same engine the exchange uses)."""
    from service.mapping import map_record

    record = current.runtime().intake.get(_kind(plural).name, record_id)
    mapped = map_record(record.kind, record.content, findings=record.warnings)
    response = Response(json.dumps(mapped.bundle, ensure_ascii=False), status=200, mimetype=FHIR_JSON)
    response.headers["ETag"] = etag(record.version)
    return response


@bp.post(f"/preview/{KIND_SEGMENT}")
def preview(plural: str) -> Response:
    """Check and map a record without storing it: the Bundle, its validation outcome, the record's warnings."""
    from service.mapping import map_record

    checked = current.runtime().intake.check(_kind(plural).name, current.body())
    mapped = map_record(checked.kind.name, checked.new.content, findings=checked.warnings)
    body = {"kind": checked.kind.name, "bundle": mapped.bundle, "outcome": mapped.outcome,
            "warnings": checked.warnings, "findings": findings_of(checked.warnings)}
    # the standard library keeps FHIR's element order (Flask's JSON sorts keys)
    return Response(json.dumps(body, ensure_ascii=False), status=200, mimetype="application/json")


@bp.get(f"/{KIND_SEGMENT}")
def search(plural: str) -> Response:
    kind = _kind(plural)
    query = _list_query(kind, request.args)
    # One more than asked for tells whether another page exists, so `next` never leads to an empty page.
    page = current.runtime().store.list(dataclasses.replace(query, limit=query.limit + 1))
    following = None
    if len(page) > query.limit:
        page = page[: query.limit]
        args: dict[str, Any] = request.args.to_dict() | {"cursor": cursor(page[-1].pk)}
        following = url_for("domain_api.search", plural=plural, **args)
    body = {"items": [represent(r) for r in page], "count": len(page), "next": following}
    return auditing.shown(jsonify(body), body)


LIST_PARAMS = {"patient_identifier", "date_from", "date_to", "limit", "cursor"}


def _list_query(kind: Kind, args: Any) -> ListQuery:
    unknown = sorted(set(args) - LIST_PARAMS)
    if unknown:
        allowed = f"not one of {sorted(LIST_PARAMS)}"
        raise BadRequest("Unknown query parameter.", [Issue(name, allowed) for name in unknown])
    system, value = _patient(args.get("patient_identifier"))
    limit = integer(args, "limit", current.runtime().settings.page_size, 1, MAX_PAGE_SIZE)
    date_from = date_bound(args, "date_from", end=False)
    date_to = date_bound(args, "date_to", end=True)
    after = uncursor("cursor", args["cursor"]) if "cursor" in args else 0
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

