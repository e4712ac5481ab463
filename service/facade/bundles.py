"""Batch and transaction Bundles (POST /fhir), and a clinic record's mapped Bundle stored in its own transaction.

A batch entry is the request sent alone (http.html#brules: "treated as if an individual interaction"); a
transaction runs the same per-entry operations (interactions.py) in one unit of work, in R4 order, with its
fullUrls rewritten to the ids they are stored as (http.html#trules).
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from service.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Issue,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    RequestError,
)
from service.facade.interactions import (
    Ahead,
    ClaimLost,
    Condition,
    Interactions,
    Names,
    Prepared,
    Written,
    condition,
    create_in,
    delete_in,
    match_in,
    read_in,
    shaped,
    update_in,
    written_ahead,
)
from service.facade.provenances import write_provenance
from service.facade.references import check_referrers
from service.fhirjson import (
    Finding,
    error_outcome,
    etag,
    if_match_version,
    operation_outcome,
    renamed,
    renaming,
    version_id,
)
from service.search.parameters import TYPES
from service.security.scopes import insufficient
from service.store.batch import rest_of
from service.store.resources import Unit
from service.store.stored import StoredResource, instant

#: R4 transaction processing order (http.html#trules): deletes, creates, updates, reads.
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}
#: may the caller do these interactions (scope letters c r u d s) on this resource type? (web/auth.py)
Permits = Callable[[str, str], bool]
#: scope letters each Bundle entry needs, by method
ENTRY_LETTERS = {"GET": "r", "POST": "c", "PUT": "u", "DELETE": "d"}


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


@dataclass(frozen=True)
class ExportDraft:
    """A clinic record's export worked out before its unit of work (draft_export), whose writers wait for it: the
    ids its creates make, the names its references are rewritten to, and each create's and update's resource as
    written under them, by entry (with the entry's resource it was made from). export_record uses the resources
    when its own names are the same: its conditional creates found what the draft's found."""

    bundle: dict[str, Any]
    requests: list[_Request]
    prepared: dict[int, Prepared]
    conditions: dict[int, Condition]
    ids: dict[int, str]
    names: Names
    written: dict[int, tuple[Any, Ahead]]
    #: by entry, batch.rest_of its resource as in `bundle` (written's texts before their references were renamed)
    texts: dict[int, str]


def draft_export(unit: Unit, bundle: dict[str, Any]) -> ExportDraft | None:
    """export_record's work that needs no unit of work of its own, done in `unit` (a read): None when an entry
    would fail (export_record says why)."""
    requests = [_request_of(i, e) for i, e in enumerate(bundle["entry"])]
    if any(r.error for r in requests):
        return None
    prepared = {r.index: shaped(r.resource_type, r.resource, [], _id_in_url(r))
                for r in requests if r.method in ("POST", "PUT")}
    ids = {r.index: str(uuid.uuid4()) for r in requests if r.method == "POST" or r.criteria is not None}
    names = _named(requests, ids, {})
    conditions = {}
    try:
        for r in requests:
            if (r.method == "POST" and r.if_none_exist) or r.criteria is not None:
                when = conditions[r.index] = condition(r.resource_type, r.if_none_exist or r.criteria or "",
                                                       f"entry[{r.index}] criteria")
                found = match_in(unit, when)
                if r.full_url:
                    names[r.full_url] = f"{r.resource_type}/{found.id if found else ids[r.index]}"
        # each resource's text but for its HEAD elements is the Bundle's (text) with its references renamed
        renames = renaming(names)
        texts, written = {}, {}
        for r in requests:
            if not r.if_none_exist and r.criteria is None and r.method in ("POST", "PUT"):
                texts[r.index] = text = rest_of(r.resource)  # as of prepared's: shaped sets only HEAD elements
                rest = renamed(text, renames) if renames is not None else None
                written[r.index] = (r.resource, written_ahead(unit, prepared[r.index], names, rest))
    except RequestError:
        return None
    return ExportDraft(bundle, requests, prepared, conditions, ids, names, written, texts)


def export_record(unit: Unit, bundle: dict[str, Any], draft: ExportDraft | None = None) -> list[StoredResource]:
    """Store the mapped (and already validated) Bundle of the clinic record `unit.record_id` in the caller's
    transaction; their Provenance names the record. `draft`: draft_export's, of this Bundle.

    References to other records' resources may point ahead (a session stored before its plan):
    the ids are deterministic, so they resolve once the plan arrives.
    """
    if draft is not None and draft.bundle is bundle:  # read from this Bundle already
        requests, prepared = draft.requests, draft.prepared
    else:
        requests = [_request_of(i, e) for i, e in enumerate(bundle["entry"])]
        for request in requests:
            if request.error:
                with _at(request):
                    raise request.error
        prepared = {r.index: shaped(r.resource_type, r.resource, [], _id_in_url(r))
                    for r in requests if r.method in ("POST", "PUT")}
    log: list[Written] = []
    if unit.record_id is None:
        raise ValueError("export_record needs a unit of work for a record (Unit.record_id)")
    unit.prefetch(_replaced(requests))
    # what its references name need not be stored (interactions._write)
    _run(unit, None, requests, prepared, log, set(), draft)  # no answers: nobody reads them
    for written in log:
        unit.link_record(written.resource.resource_type, written.resource.id, unit.record_id)
    return [w.resource for w in log]


def replaced(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, id) of what a clinic record's Bundle updates by id: the rows export_record reads first."""
    return _replaced([_request_of(i, e) for i, e in enumerate(bundle["entry"])])


def _replaced(requests: list[_Request]) -> list[tuple[str, str]]:
    return [(r.resource_type, r.resource_id) for r in requests if r.method == "PUT" and r.resource_id]


def _batch_entry(server: Interactions, base: str, r: _Request) -> dict[str, Any]:
    """The entry as a request sent alone (http.html#brules), its failure its own answer."""
    try:
        if r.error:
            raise r.error
        if r.method == "GET":
            return _read(base, server.read(r.resource_type, r.resource_id or "", r.version))
        if r.method == "DELETE":
            return _deleted(server.delete(r.resource_type, r.resource_id or ""))
        if r.method == "POST":
            return _written(base, server.create(r.resource_type, r.resource, r.if_none_exist))
        if r.criteria is not None:
            return _written(base, server.conditional_update(r.resource_type, r.criteria, r.resource))
        return _written(base, server.update(r.resource_type, r.resource_id or "", r.resource, r.if_match))
    except RequestError as exc:  # the OperationOutcome the request alone would get, saying which entry it is
        outcome = error_outcome(exc.status, f"Entry {_entry_name(r)}: {exc.detail}", exc.issues,
                                exc.extra.get("operation_outcome"))
        return {"response": {"status": f"{exc.status} {exc.title}", "outcome": outcome}}


def _transaction(server: Interactions, base: str, requests: list[_Request]) -> dict[str, Any]:
    """Every entry in one database transaction, or none (http.html#trules)."""
    try:
        for request in requests:  # malformed entries (forbidden ones were refused before): the first one's error
            if request.error:
                with _at(request):
                    raise request.error
        prepared: dict[int, Prepared] = {}
        for r in requests:
            if r.method in ("POST", "PUT"):
                with _at(r):  # checked as the request alone would be, once, outside the retried unit
                    prepared[r.index] = server.prepare(r.resource_type, r.resource, _id_in_url(r))
        for _attempt in range(3):
            try:
                with server.store.unit(write=True) as unit:
                    log: list[Written] = []
                    responses = _run(unit, base, requests, prepared, log, set())
                    for written in log:  # read into clinic records in the same transaction
                        server.followed(unit, written)
                return {"resourceType": "Bundle", "type": "transaction-response", "entry": responses}
            except (IntegrityError, ClaimLost):  # a concurrent transaction claimed the same ifNoneExist: again
                continue
    except RequestError as exc:
        raise type(exc)(f"The transaction failed{_failed_at(exc)} and nothing was stored: "
                        f"{exc.detail}", exc.issues, **exc.extra) from None
    raise Conflict("The transaction kept meeting concurrent identical creates; retry it.")


def _run(unit: Unit, base: str | None, requests: list[_Request], prepared: dict[int, Prepared], log: list[Written],
         pending: set[str], draft: ExportDraft | None = None) -> list[dict[str, Any]]:
    """A transaction's entries in one unit, in R4 order; the response entries in request order (empty ones for the
    writes when `base` is None: a record's export answers nobody). Their rows are sent together (Unit.batch): one
    statement a table, not three a resource."""
    with unit.batch():
        return _entries(unit, base, requests, prepared, log, pending, draft)


def _entries(unit: Unit, base: str | None, requests: list[_Request], prepared: dict[int, Prepared], log: list[Written],
             pending: set[str], draft: ExportDraft | None = None) -> list[dict[str, Any]]:
    ids = draft.ids if draft is not None else {}
    drafted = draft.conditions if draft is not None and draft.requests is requests else {}  # of these entries
    names = _named(requests, ids, {f"#ahead-{i}": key for i, key in enumerate(sorted(pending))})
    responses: dict[int, dict[str, Any]] = {}
    conditions: dict[int, Condition] = {}
    unit.provenance = []  # one Provenance for the Bundle's (or the record's) versions, written at the end
    targets: dict[int, str] = {}  # a conditional update's resource: the one matched, or the id it is created at
    # conditional creates and updates first: every reference to them must know where it points
    for r in requests:
        if (r.method == "POST" and r.if_none_exist) or r.criteria is not None:
            with _at(r):
                when = drafted.get(r.index) or condition(r.resource_type, r.if_none_exist or r.criteria or "",
                                                         f"entry[{r.index}] criteria")
                found = match_in(unit, when)
                if r.criteria is not None and found is not None and r.resource.get("id") not in (None, found.id):
                    raise BadRequest(f"The resource's id {r.resource['id']!r} is not the matching resource's "
                                     f"{found.id!r}.", [Issue("id", f"expected {found.id} or none")])
            if found is None or r.criteria is None:
                conditions[r.index] = when  # a create claims its criteria against concurrent ones
            if found is not None and r.criteria is None:
                responses[r.index] = _written(base, Written(found, False)) if base is not None else {}
            targets[r.index] = found.id if found else ids.get(r.index) or str(uuid.uuid4())
            if r.full_url:
                names[r.full_url] = f"{r.resource_type}/{targets[r.index]}"
    # the draft's resources were written under its names: usable if they are these (what its searches found is)
    ahead = draft.written if draft is not None and draft.names == names else {}
    for r in sorted(requests, key=lambda q: (ORDER[q.method], q.index)):
        if r.index not in responses:
            made, written = ahead.get(r.index, (None, None))
            with _at(r):
                responses[r.index] = _perform(unit, base, r, names, prepared, conditions.get(r.index), log,
                                              targets.get(r.index), written if made is r.resource else None)
    deletes = [r for r in requests if r.method == "DELETE"]
    if deletes:  # once all are done: a transaction may delete a resource together with what refers to it
        with _at(deletes[0] if len(deletes) == 1 else None):
            check_referrers(unit, [f"{r.resource_type}/{r.resource_id}" for r in deletes])
    versions, unit.provenance = unit.provenance, None
    write_provenance(unit, versions)
    return [responses[r.index] for r in requests]


def _named(requests: list[_Request], ids: dict[int, str], names: Names) -> Names:
    """`names` with the fullUrl of every plain create and update of `requests` mapped to the Type/id it is stored as:
    a create's id from `ids` (a draft's) or a new one; a conditional create's or update's is named once its search
    has run."""
    for r in requests:
        if r.method == "POST" and r.full_url and not r.if_none_exist:
            names[r.full_url] = f"{r.resource_type}/{ids.get(r.index) or uuid.uuid4()}"
        elif r.method == "PUT" and r.resource_id:  # keyed by fullUrl, or a key no reference can use
            names[r.full_url or f"#entry-{r.index}"] = f"{r.resource_type}/{r.resource_id}"
    return names


def _perform(unit: Unit, base: str | None, r: _Request, names: Names, prepared: dict[int, Prepared],
             when: Condition | None, log: list[Written], target: str | None = None,
             ahead: Ahead | None = None) -> dict[str, Any]:
    """One transaction entry: the operation a request sent alone runs, in the transaction's unit; a conditional
    update (http.html#cond-update) writes its `target`, creating it under its `when` when nothing matched.
    `ahead`: the resource as written, from a draft (ExportDraft)."""
    if r.method == "GET":
        return _read(base or "", read_in(unit, r.resource_type, r.resource_id or "", r.version))
    if r.method == "DELETE":
        return _deleted(delete_in(unit, r.resource_type, r.resource_id or "", check=False))
    if r.method == "POST":
        new_id = names[r.full_url].split("/")[-1] if r.full_url in names else str(uuid.uuid4())
        written = create_in(unit, prepared[r.index], new_id, names, when, ahead)
    elif r.criteria is not None and when is not None:
        written = create_in(unit, prepared[r.index], target or str(uuid.uuid4()), names, when)
    else:
        written = update_in(unit, prepared[r.index], target or r.resource_id or "", r.if_match, names, ahead)
    log.append(written)
    return _written(base, written) if base is not None else {}


@contextmanager
def _at(r: _Request | None) -> Iterator[None]:
    """An error names the entry it came from, by index and fullUrl (a failed transaction says where)."""
    try:
        yield
    except RequestError as exc:
        if r is not None:
            exc.extra.setdefault("entry", _entry_name(r))
        raise


def _id_in_url(r: _Request) -> str | None:
    """The id an update names in its URL (a create's, and a conditional update's, is the server's to choose)."""
    return r.resource_id if r.method == "PUT" else None


def _entry_name(r: _Request) -> str:
    return f"{r.index} ({r.full_url})" if r.full_url else f"{r.index} ({r.method} {r.resource_type}" + (
        f"/{r.resource_id})" if r.resource_id else ")")


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
    version: int | None = None   # a GET of Type/id/_history/vid: vread
    error: RequestError | None = None
    criteria: str | None = None  # a conditional update's search (PUT Type?identifier=…)


def _request_of(index: int, entry: Any) -> _Request:
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        return _refused(index, BadRequest(f"{where} has no request.", [Issue(f"{where}.request", "required")]))
    request = entry["request"]
    method, url = request.get("method"), request.get("url")
    if method not in ORDER or method == "HEAD" or not isinstance(url, str) or not url:
        return _refused(index, BadRequest(f"{where}.request needs a method (GET, POST, PUT, DELETE) and a url.",
                                          [Issue(f"{where}.request", "method and url required")]))
    parts = url.split("?", 1)[0].strip("/").split("/")
    resource_type, resource_id = parts[0], parts[1] if len(parts) > 1 else None
    if_match = None
    if request.get("ifMatch"):
        if_match = if_match_version(str(request["ifMatch"]))
        if if_match is None:  # as the If-Match header: a condition that cannot hold (RFC 9110 §13.1.1)
            return _refused(index, PreconditionFailed(f"{where}.request.ifMatch is not an ETag like W/\"1\".",
                                                      [Issue(f"{where}.request.ifMatch", "expected W/\"n\"")]))
    out = _Request(index, method, resource_type, resource_id, entry.get("resource"), entry.get("fullUrl"),
                   request.get("ifNoneExist"), if_match)
    if method == "PUT" and resource_id is None and "?" in url:
        out.criteria = url.split("?", 1)[1]
    out.error = _refusal(where, out, url, parts[2:])
    return out


def _refused(index: int, error: RequestError) -> _Request:
    """An entry whose request cannot be read: a GET of nothing carrying why (made only then: a dataclass's
    __init__ a well-formed entry made for nothing, ~10 a clinic record)."""
    return _Request(index, "GET", "", None, None, None, None, None, error=error)


def _refusal(where: str, r: _Request, url: str, rest: list[str]) -> RequestError | None:
    """Why an entry cannot run, if it cannot: a type we do not serve, a URL its method cannot take, no resource."""
    if r.resource_type not in TYPES:
        return NotFound(f"{where}: this server does not serve {r.resource_type!r}.")
    if r.method == "POST":
        if r.resource_id is not None:
            return BadRequest(f"{where}: POST goes to the type, not Type/id.",
                              [Issue(f"{where}.request.url", f"expected {r.resource_type}")])
    elif r.method == "GET" and len(rest) == 2 and rest[0] == "_history":
        r.version = version_id(rest[1])
        if r.version is None:  # as GET [type]/[id]/_history/[vid] alone
            return NotFound(f"{r.resource_type}/{r.resource_id} has no version {rest[1]!r}.")
    elif r.criteria is None and (rest or r.resource_id is None or (r.method != "PUT" and "?" in url)):
        # not read as Type/id with the rest dropped: a PUT to Type/id/_history/1 would update Type/id
        shape = {"GET": "Type/id or Type/id/_history/vid", "PUT": "Type/id or Type?criteria"}.get(r.method, "Type/id")
        return BadRequest(f"{where}: {r.method} needs {shape}.",
                          [Issue(f"{where}.request.url", f"expected {shape}")])
    if r.method in ("POST", "PUT") and not isinstance(r.resource, dict):
        return BadRequest(f"{where}: {r.method} needs a resource.", [Issue(f"{where}.resource", "required")])
    return None


def _permit(r: _Request, permits: Permits) -> None:
    """Mark an entry the caller may not run; a malformed entry keeps its own error."""
    if r.error is not None:
        return
    conditional = (r.method == "POST" and r.if_none_exist) or r.criteria is not None
    letters = ENTRY_LETTERS[r.method] + ("s" if conditional else "")
    if not permits(r.resource_type, letters):
        r.error = insufficient(r.resource_type, letters, f"Bundle.entry[{r.index}]: {r.method} {r.resource_type}")


def _failed_at(exc: RequestError) -> str:
    entry = exc.extra.pop("entry", None)
    return f" at entry {entry}" if entry is not None else ""


# --- response entries --------------------------------------------------------------------------

def _read(base: str, found: StoredResource) -> dict[str, Any]:
    return {"resource": found.content, "response": _response(base, found, 200)}


def _deleted(stored: StoredResource) -> dict[str, Any]:
    return {"response": {"status": "204 No Content", "etag": etag(stored.version)}}


def _written(base: str, written: Written) -> dict[str, Any]:
    return {"response": _response(base, written.resource, written.status, written.findings)}


def _response(base: str, stored: StoredResource, status: int, findings: list[Finding] | None = None
              ) -> dict[str, Any]:
    text = {200: "200 OK", 201: "201 Created"}[status]
    out: dict[str, Any] = {"status": text,
                           "location": f"{stored.resource_type}/{stored.id}/_history/{stored.version}",
                           "etag": etag(stored.version), "lastModified": instant(stored.last_updated)}
    if findings:
        out["outcome"] = operation_outcome(findings)
    return out

