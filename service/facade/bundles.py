"""Batch and transaction Bundles (POST /fhir), and a clinic record's mapped Bundle stored in its own transaction."""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from service.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Issue,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    RequestError,
)
from service.facade.interactions import (
    ClaimLost,
    Interactions,
    Written,
    claim,
    client_meta,
    criteria_query,
    normal_criteria,
    write,
)
from service.facade.references import references, rewrite
from service.search.parameters import TYPES
from service.security.provenance import RECORD
from service.security.scopes import insufficient
from service.store.resources import StoredResource, Unit, instant
from service.validation.outcome import Finding, operation_outcome

#: R4 transaction processing order (http.html#trules): deletes, creates, updates, reads.
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}
#: may the caller do these interactions (scope letters c r u d s) on this resource type? (web/auth.py)
Permits = Callable[[str, str], bool]
#: scope letters each Bundle entry needs, by method
ENTRY_LETTERS = {"GET": "r", "POST": "c", "PUT": "u", "DELETE": "d"}
Checked = dict[int, tuple[dict[str, Any], list[Finding]]]


def bundle(server: Interactions, body: Any, base: str, max_entries: int,
           permits: Permits | None = None) -> dict[str, Any]:
    """A batch or transaction; `permits` checks every entry's interaction (a batch answers a forbidden
    entry 403, a transaction with one fails whole with 403 before anything runs)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise BadRequest("POST /fhir takes a Bundle of type batch or transaction.",
                         [Issue("resourceType", "expected Bundle")])
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest(f"Bundle.type {kind!r}: this endpoint processes batch and transaction Bundles.",
                         [Issue("Bundle.type", "expected batch or transaction")])
    entries = body.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("Bundle.entry must be a list.", [Issue("Bundle.entry", "expected a list")])
    if len(entries) > max_entries:
        raise PayloadTooLarge(f"The Bundle has {len(entries)} entries; this server takes at most {max_entries}.")
    requests = [_request_of(i, e) for i, e in enumerate(entries)]
    if permits is not None:
        for r in requests:
            _permit(r, permits)
    forbidden = [r.error for r in requests if isinstance(r.error, Forbidden)]
    if kind == "transaction" and forbidden:
        raise Forbidden(f"The transaction was refused and nothing was stored: {forbidden[0].detail}",
                        forbidden[0].challenge)
    if kind == "batch":
        return {"resourceType": "Bundle", "type": "batch-response",
                "entry": [_batch_entry(server, base, r) for r in requests]}
    return _transaction(server, base, requests)


def export_record(server: Interactions, unit: Unit, bundle: dict[str, Any], record_id: str) -> list[StoredResource]:
    """Store a clinic record's mapped (and already validated) Bundle in the caller's transaction.

    References to other records' resources may point ahead (a session stored before its plan):
    the ids are deterministic, so they resolve once the plan arrives.
    """
    requests = [_request_of(i, e) for i, e in enumerate(bundle["entry"])]
    for request in requests:
        if request.error:
            raise request.error
    checked: Checked = {r.index: (r.resource, []) for r in requests if r.method in ("POST", "PUT")}
    log: list[Written] = []
    ahead = {key for r in requests for _, ref in references(r.resource, "") for key in [ref] if "/" in key}
    source = RECORD.set(record_id)  # their Provenance names the record
    try:
        _run(server, unit, "", requests, checked, log, ahead)
    finally:
        RECORD.reset(source)
    for written in log:
        unit.link_record(written.resource.resource_type, written.resource.id, record_id)
    return [w.resource for w in log]


def _batch_entry(server: Interactions, base: str, request: _Request) -> dict[str, Any]:
    try:
        if request.error:
            raise request.error
        return _perform(server, None, base, request, {})
    except RequestError as exc:
        return {"response": {"status": f"{exc.status} {exc.title}", "outcome": _error_outcome(exc)}}


def _transaction(server: Interactions, base: str, requests: list[_Request]) -> dict[str, Any]:
    for request in requests:
        if request.error:
            raise request.error
    checked = {r.index: server.checked(r.resource_type, r.resource) for r in requests if r.method in ("POST", "PUT")}
    log: list[Written] = []
    for attempt in range(3):
        try:
            with server.store.unit(write=True) as unit:
                responses = _run(server, unit, base, requests, checked, log, set())
                for written in log:  # read into clinic records in the same transaction
                    server.followed(unit, written)
            break
        except (IntegrityError, ClaimLost):  # a concurrent transaction claimed the same ifNoneExist: run again
            log.clear()
            if attempt == 2:
                raise Conflict("The transaction kept meeting concurrent identical creates; retry it.") from None
        except RequestError as exc:
            raise type(exc)(f"The transaction failed at entry {_failed_at(exc)}and nothing was stored: "
                            f"{exc.detail}", exc.issues, **exc.extra) from None
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": responses}


def _run(server: Interactions, unit: Unit, base: str, requests: list[_Request], checked: Checked,
         log: list[Written], pending: set[str]) -> list[dict[str, Any]]:
    """A transaction's entries in one unit, in R4 order; the response entries in request order."""
    # every urn:uuid and Type/id fullUrl of a created or updated resource, mapped to its stored id
    names: dict[str, str] = {f"#ahead-{i}": key for i, key in enumerate(sorted(pending))}
    for r in requests:
        if r.method == "POST" and r.full_url and not r.if_none_exist:
            names[r.full_url] = f"{r.resource_type}/{uuid.uuid4()}"
        elif r.method == "PUT" and r.resource_id:  # keyed by fullUrl, or a key no reference can use
            names[r.full_url or f"#entry-{r.index}"] = f"{r.resource_type}/{r.resource_id}"
    responses: dict[int, dict[str, Any]] = {}
    # conditional creates first: every reference to them must know where it points
    for r in requests:
        if r.method == "POST" and r.if_none_exist:
            query = criteria_query(r.resource_type, r.if_none_exist, f"entry[{r.index}].ifNoneExist")
            matches, _ = unit.search(query)
            if len(matches) > 1:
                raise PreconditionFailed(f"entry[{r.index}]: ifNoneExist matches {len(matches)} resources.")
            if matches:
                responses[r.index] = {"response": _response(base, matches[0], 200)}
            found = matches[0].id if matches else str(uuid.uuid4())
            if r.full_url:
                names[r.full_url] = f"{r.resource_type}/{found}"
    for r in sorted(requests, key=lambda q: (ORDER[q.method], q.index)):
        if r.index not in responses:
            responses[r.index] = _perform(server, unit, base, r, names, checked.get(r.index), log)
            if r.method == "POST" and r.if_none_exist:  # race-free, as a single conditional create
                query = criteria_query(r.resource_type, r.if_none_exist, f"entry[{r.index}].ifNoneExist")
                claim(unit, query, normal_criteria(r.if_none_exist), log[-1].resource.pk)
    return [responses[r.index] for r in requests]


def _perform(server: Interactions, unit: Unit | None, base: str, r: _Request, names: dict[str, str],
             checked: tuple[dict[str, Any], list[Finding]] | None = None,
             log: list[Written] | None = None) -> dict[str, Any]:
    """One entry: inside a transaction's unit, or on its own (batch)."""
    try:
        if r.method == "GET":
            found = server.read(r.resource_type, r.resource_id or "") if unit is None else _unit_read(unit, r)
            return {"resource": found.content, "response": _response(base, found, 200)}
        if r.method == "DELETE":
            if unit is None:
                stored = server.delete(r.resource_type, r.resource_id or "")
            else:
                current = unit.get(r.resource_type, r.resource_id or "")
                if current is None:
                    raise NotFound(f"{r.resource_type}/{r.resource_id} is not known to this server.")
                stored = current if current.deleted else unit.write(r.resource_type, current.id, None, [], "DELETE")
            return {"response": {"status": "204 No Content", "etag": f'W/"{stored.version}"'}}
        if unit is None:
            resource = rewrite(r.resource, names)
            if r.method == "POST":
                written = server.create(r.resource_type, resource, r.if_none_exist)
            else:
                written = server.update(r.resource_type, r.resource_id or "", resource, r.if_match)
            return {"response": _response(base, written.resource, written.status, written.findings)}
        resource, findings = checked or server.checked(r.resource_type, resource)
        resource = rewrite(resource, names)
        resource["meta"] = client_meta(resource.get("meta"))
        if r.method == "POST":
            new_id = names.get(r.full_url or "", f"/{uuid.uuid4()}").split("/")[-1]
            written = write(unit, r.resource_type, new_id, {k: v for k, v in resource.items() if k != "id"},
                            findings, "POST", True, set(names.values()))
        else:
            current = unit.get(r.resource_type, r.resource_id or "")
            if r.if_match is not None and (current is None or current.version != r.if_match):
                raise PreconditionFailed(f"entry[{r.index}]: ifMatch W/\"{r.if_match}\" does not match.")
            if resource.get("id") != r.resource_id:
                raise BadRequest(f"entry[{r.index}]: the resource's id is not the id in request.url.",
                                 [Issue(f"Bundle.entry[{r.index}].resource.id", f"expected {r.resource_id}")])
            written = write(unit, r.resource_type, r.resource_id or "", resource, findings, "PUT",
                            current is None or current.deleted, set(names.values()))
        if log is not None:
            log.append(written)
        return {"response": _response(base, written.resource, written.status, written.findings)}
    except RequestError as exc:
        exc.extra.setdefault("entry", r.index)
        raise


@dataclass
class _Request:
    index: int
    method: str
    resource_type: str
    resource_id: str | None
    resource: Any
    full_url: str | None
    if_none_exist: str | None
    if_match: int | None
    error: RequestError | None = None


def _request_of(index: int, entry: Any) -> _Request:
    where = f"Bundle.entry[{index}]"
    blank = _Request(index, "GET", "", None, None, None, None, None)
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        blank.error = BadRequest(f"{where} has no request.", [Issue(f"{where}.request", "required")])
        return blank
    request = entry["request"]
    method, url = request.get("method"), request.get("url")
    if method not in ORDER or method == "HEAD" or not isinstance(url, str) or not url:
        blank.error = BadRequest(f"{where}.request needs a method (GET, POST, PUT, DELETE) and a url.",
                                 [Issue(f"{where}.request", "method and url required")])
        return blank
    path = url.split("?", 1)[0].strip("/")
    parts = path.split("/")
    resource_type = parts[0]
    resource_id = parts[1] if len(parts) > 1 else None
    if_match = None
    if request.get("ifMatch"):
        found = re.match(r'^(W/)?"(\d+)"$', str(request["ifMatch"]))
        if found is None:
            blank.error = BadRequest(f"{where}.request.ifMatch is not an ETag like W/\"1\".",
                                     [Issue(f"{where}.request.ifMatch", "expected W/\"n\"")])
            return blank
        if_match = int(found.group(2))
    out = _Request(index, method, resource_type, resource_id, entry.get("resource"), entry.get("fullUrl"),
                   request.get("ifNoneExist"), if_match)
    if resource_type not in TYPES:
        out.error = NotFound(f"{where}: this server does not serve {resource_type!r}.")
    elif method in ("GET", "DELETE") and (resource_id is None or "?" in url):
        out.error = BadRequest(f"{where}: {method} needs Type/id (conditional {method} is not supported).",
                               [Issue(f"{where}.request.url", "expected Type/id")])
    elif method == "PUT" and resource_id is None:
        out.error = BadRequest(f"{where}: PUT needs Type/id (conditional update in Bundles is not supported).",
                               [Issue(f"{where}.request.url", "expected Type/id")])
    elif method in ("POST", "PUT") and not isinstance(out.resource, dict):
        out.error = BadRequest(f"{where}: {method} needs a resource.", [Issue(f"{where}.resource", "required")])
    elif method == "POST" and resource_id is not None:
        out.error = BadRequest(f"{where}: POST goes to the type, not Type/id.",
                               [Issue(f"{where}.request.url", f"expected {resource_type}")])
    return out


def _permit(r: _Request, permits: Permits) -> None:
    """Mark an entry the caller may not run; a malformed entry keeps its own error."""
    if r.error is not None:
        return
    letters = ENTRY_LETTERS[r.method] + ("s" if r.method == "POST" and r.if_none_exist else "")
    if not permits(r.resource_type, letters):
        r.error = insufficient(r.resource_type, letters, f"Bundle.entry[{r.index}]: {r.method} {r.resource_type}")


def _unit_read(unit: Unit, r: _Request) -> StoredResource:
    found = unit.get(r.resource_type, r.resource_id or "")
    if found is None:
        raise NotFound(f"{r.resource_type}/{r.resource_id} is not known to this server.")
    if found.deleted:
        raise Gone(f"{r.resource_type}/{r.resource_id} was deleted.")
    return found


def _failed_at(exc: RequestError) -> str:
    index = exc.extra.pop("entry", None)
    return f"{index} " if index is not None else ""


def _response(base: str, stored: StoredResource, status: int, findings: list[Finding] | None = None
              ) -> dict[str, Any]:
    text = {200: "200 OK", 201: "201 Created"}[status]
    out: dict[str, Any] = {"status": text,
                           "location": f"{stored.resource_type}/{stored.id}/_history/{stored.version}",
                           "etag": f'W/"{stored.version}"', "lastModified": instant(stored.last_updated)}
    if findings:
        out["outcome"] = operation_outcome(findings)
    return out


def _error_outcome(exc: RequestError) -> dict[str, Any]:
    if "operation_outcome" in exc.extra:
        return exc.extra["operation_outcome"]  # type: ignore[no-any-return]
    issues = [{"severity": "error", "code": "processing", "details": {"text": exc.detail}}]
    issues += [{"severity": "error", "code": "processing", "details": {"text": i.message}, "expression": [i.field]}
               for i in exc.issues]
    return {"resourceType": "OperationOutcome", "issue": issues}
