"""The FHIR R4 server behind /fhir: interactions on stored resources, with no knowledge of HTTP.

Every write is validated by the profile validator first (errors: 422, nothing stored) and runs in
one database transaction that also versions the resource and rewrites its search index. The web
layer turns the results into status codes, headers and bodies.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sqlalchemy.exc import IntegrityError

from service.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Issue,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    RequestError,
    Unprocessable,
)
from service.search.parameters import TYPES, params_of, parse_range
from service.search.query import Query, parse
from service.security.provenance import RECORD, provenance
from service.security.scopes import insufficient
from service.store.resources import ResourceStore, StoredResource, Unit, instant
from service.validation.outcome import Finding, operation_outcome

ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: R4 transaction processing order (http.html#trules): deletes, creates, updates, reads.
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}

Validate = Callable[[dict[str, Any]], list[Finding]]
#: may the caller do these interactions (scope letters c r u d s) on this resource type? (web/auth.py)
Permits = Callable[[str, str], bool]
#: scope letters each Bundle entry needs, by method
ENTRY_LETTERS = {"GET": "r", "POST": "c", "PUT": "u", "DELETE": "d"}
#: CapabilityStatement.rest.security; codes from R4 restful-security-service (OAuth, SMART-on-FHIR)
SECURITY = {
    "cors": False,
    "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                             "code": code, "display": code}]} for code in ("SMART-on-FHIR", "OAuth")],
    "description": "Every interaction except GET metadata needs Authorization: Bearer with an API key "
                   "(ketamine-fhir clients add) or a JWT access token from the configured OAuth issuer. SMART "
                   "system/ scopes decide, v2 (system/Observation.rs) or v1 (system/*.read): per interaction, per "
                   "Bundle entry and per _include target; system/AuditEvent.rs reads the audit trail.",
}


class _ClaimLost(Exception):
    """A concurrent conditional create committed a matching resource after our search."""


@dataclass
class Written:
    """A write's result: the stored version, whether it was created, and the validation findings."""

    resource: StoredResource
    created: bool
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # e.g. why it was not read into a clinic record

    @property
    def status(self) -> int:
        return 201 if self.created else 200


class FhirServer:
    def __init__(self, store: ResourceStore, validate: Validate, max_bundle_entries: int = 500,
                 after_write: Callable[[Unit, StoredResource], list[str]] | None = None) -> None:
        self.store = store
        self.validate = validate
        self.max_bundle_entries = max_bundle_entries
        #: runs after a write, in its transaction, e.g. to read the resource into a clinic record; returns notes
        self.after_write = after_write

    def _followed(self, unit: Unit, written: Written) -> Written:
        if self.after_write is not None:
            written.notes.extend(self.after_write(unit, written.resource))
        return written

    # --- checks ----------------------------------------------------------------------------

    @staticmethod
    def check_type(resource_type: str) -> None:
        if resource_type not in TYPES:
            raise NotFound(f"This server does not serve {resource_type} resources (it serves {', '.join(TYPES)}).")

    def _checked(self, resource_type: str, body: Any) -> tuple[dict[str, Any], list[Finding]]:
        if not isinstance(body, dict):
            raise BadRequest("The body must be a JSON object (a FHIR resource).", [Issue("$", "expected an object")])
        if body.get("resourceType") != resource_type:
            raise BadRequest(f"The URL names {resource_type} but the resource is {body.get('resourceType')!r}.",
                             [Issue("resourceType", f"expected {resource_type}")])
        findings = self.validate(body)
        errors = [f for f in findings if f.severity in ("error", "fatal")]
        if errors:
            raise Unprocessable(f"The {resource_type} does not conform to its profile.",
                                [Issue(f.expression, f.message) for f in errors],
                                operation_outcome=operation_outcome(findings))
        return body, [f for f in findings if f.severity not in ("error", "fatal")]

    # --- instance interactions -------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str, version: int | None = None) -> StoredResource:
        self.check_type(resource_type)
        with self.store.unit() as unit:
            found = unit.get(resource_type, resource_id) if version is None else unit.version(
                resource_type, resource_id, version)
        if found is None:
            what = f"{resource_type}/{resource_id}" + (f"/_history/{version}" if version is not None else "")
            raise NotFound(f"{what} is not known to this server.")
        if found.deleted:
            raise Gone(f"{resource_type}/{resource_id} was deleted (version {found.version}).")
        return found

    def create(self, resource_type: str, body: Any, if_none_exist: str | None = None) -> Written:
        self.check_type(resource_type)
        resource, findings = self._checked(resource_type, body)
        resource = {k: v for k, v in resource.items() if k != "id"}
        resource["meta"] = _client_meta(resource.get("meta"))
        if if_none_exist is None:
            with self.store.unit(write=True) as unit:
                written = self._write(unit, resource_type, str(uuid.uuid4()), resource, findings, "POST", True)
                return self._followed(unit, written)
        return self._conditional_create(resource_type, resource, findings, if_none_exist)

    def _conditional_create(self, resource_type: str, resource: dict[str, Any], findings: list[Finding],
                            criteria: str) -> Written:
        query = self._criteria_query(resource_type, criteria, "If-None-Exist")
        key = _normal_criteria(criteria)
        for _attempt in range(3):
            try:
                with self.store.unit(write=True) as unit:
                    matches, _ = unit.search(query)
                    if len(matches) > 1:
                        raise PreconditionFailed(f"If-None-Exist {criteria!r} matches {len(matches)} resources.")
                    if matches:
                        return Written(matches[0], False)
                    written = self._write(unit, resource_type, str(uuid.uuid4()), resource, findings, "POST", True)
                    _claim(unit, query, key, written.resource.pk)
                    return self._followed(unit, written)
            except (IntegrityError, _ClaimLost):
                continue  # a concurrent identical create won the claim: search again, now it is visible
        raise Conflict(f"Could not settle If-None-Exist {criteria!r} against concurrent writers; retry.")

    def update(self, resource_type: str, resource_id: str, body: Any, if_match: int | None = None) -> Written:
        self.check_type(resource_type)
        if not ID.match(resource_id):
            raise BadRequest(f"{resource_id!r} is not a FHIR id.", [Issue("id", "1-64 of A-Z a-z 0-9 - .")])
        if isinstance(body, dict) and body.get("id") != resource_id:
            raise BadRequest(f"The resource's id {body.get('id')!r} is not the id in the URL {resource_id!r}.",
                             [Issue("id", f"expected {resource_id}")])
        resource, findings = self._checked(resource_type, body)
        resource = {**resource, "meta": _client_meta(resource.get("meta"))}
        with self.store.unit(write=True) as unit:
            current = unit.get(resource_type, resource_id)
            if if_match is not None and (current is None or current.deleted or current.version != if_match):
                at = "no current version" if current is None or current.deleted else f"version {current.version}"
                raise PreconditionFailed(f"If-Match W/\"{if_match}\" does not match: "
                                         f"{resource_type}/{resource_id} is at {at}.")
            created = current is None or current.deleted
            written = self._write(unit, resource_type, resource_id, resource, findings, "PUT", created)
            return self._followed(unit, written)

    def conditional_update(self, resource_type: str, criteria: str, body: Any) -> Written:
        self.check_type(resource_type)
        query = self._criteria_query(resource_type, criteria, "the conditional update")
        with self.store.unit() as unit:
            matches, _ = unit.search(query)
        if len(matches) > 1:
            raise PreconditionFailed(f"{criteria!r} matches {len(matches)} resources; be more specific.")
        if not matches:
            if isinstance(body, dict) and body.get("id"):
                return self.update(resource_type, str(body["id"]), body)
            return self.create(resource_type, body)
        target = matches[0].id
        if isinstance(body, dict) and body.get("id") not in (None, target):
            raise BadRequest(f"The resource's id {body.get('id')!r} is not the matching resource's {target!r}.",
                             [Issue("id", f"expected {target} or none")])
        return self.update(resource_type, target, {**body, "id": target} if isinstance(body, dict) else body)

    def delete(self, resource_type: str, resource_id: str) -> StoredResource:
        self.check_type(resource_type)
        with self.store.unit(write=True) as unit:
            current = unit.get(resource_type, resource_id)
            if current is None:
                raise NotFound(f"{resource_type}/{resource_id} is not known to this server.")
            if current.deleted:
                return current
            return unit.write(resource_type, resource_id, None, [], "DELETE")

    def _write(self, unit: Unit, resource_type: str, resource_id: str, resource: dict[str, Any],
               findings: list[Finding], method: str, created: bool, pending: set[str] | None = None) -> Written:
        _check_references(unit, resource, pending or set())
        stored = unit.write(resource_type, resource_id, resource, [_as_warning(f) for f in findings], method)
        if resource_type != "Provenance":  # who sent it, or which record it came from; same transaction
            target = f"{resource_type}/{stored.id}/_history/{stored.version}"
            unit.write("Provenance", str(uuid.uuid4()), provenance(target, created, instant(stored.last_updated)),
                       [], "POST")
        return Written(stored, created, findings)

    # --- search and history ----------------------------------------------------------------

    def _criteria_query(self, resource_type: str, criteria: str, what: str) -> Query:
        items = parse_qsl(criteria.split("?", 1)[-1], keep_blank_values=True)
        if not items:
            raise BadRequest(f"{what} has no search criteria.", [Issue(what, "expected e.g. identifier=system|value")])
        query = parse(resource_type, items)
        query.count, query.total = 2, False
        return query

    def search(self, resource_type: str, items: list[tuple[str, str]], base: str, lenient: bool = False,
               can_read: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """`can_read`: an `_include` of a type the caller may not read is refused (typed) or left out (untyped)."""
        self.check_type(resource_type)
        query = parse(resource_type, items, lenient)
        for _, _name, target in query.include:
            if target is not None and can_read is not None and not can_read(target):
                raise insufficient(target, "r", f"_include of {target}")
        with self.store.unit() as unit:
            found, total = unit.search(query)
            included = [r for r in self._includes(unit, query, found) if can_read is None or can_read(r.resource_type)]
        entries = [_entry(base, r, "match") for r in found] + [_entry(base, r, "include") for r in included]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if total is not None:
            bundle["total"] = total
        kept = [(k, v) for k, v in items if k not in ("_offset",) and k not in query.ignored]
        bundle["link"] = _page_links(f"{base}/{resource_type}", kept, query.offset, query.count, len(found), total)
        bundle["entry"] = entries
        if query.ignored:
            bundle["entry"].append({"resource": {"resourceType": "OperationOutcome", "issue": [
                {"severity": "warning", "code": "not-supported", "details": {"text": f"Ignored: {name}"},
                 "expression": [name]} for name in query.ignored]}, "search": {"mode": "outcome"}})
        return bundle

    def _includes(self, unit: Unit, query: Query, found: list[StoredResource]) -> list[StoredResource]:
        keys: list[str] = []
        for _, param_name, target in query.include:
            param = params_of(query.resource_type)[param_name]
            from service.search.parameters import reference_key, values_at

            for resource in found:
                for path in param.paths:
                    for value in values_at(resource.content or {}, path):
                        key = reference_key(value)
                        if key and (target is None or key.startswith(target + "/")):
                            keys.append(key)
        seen = {(r.resource_type, r.id) for r in found}
        return [r for r in unit.by_keys(keys) if (r.resource_type, r.id) not in seen]

    def history(self, base: str, resource_type: str | None = None, resource_id: str | None = None,
                items: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        if resource_type is not None:
            self.check_type(resource_type)
        args = dict(items or [])
        unknown = sorted(set(args) - {"_since", "_count", "_offset", "_format", "_pretty"})
        if unknown:
            raise BadRequest("History takes _since, _count and _offset only.",
                             [Issue(n, "not supported") for n in unknown])
        since = _since(args.get("_since"))
        count = _bounded(args, "_count", 20, 1, 200)
        offset = _bounded(args, "_offset", 0, 0, 1_000_000)
        with self.store.unit() as unit:
            if resource_id is not None and resource_type is not None and unit.get(resource_type, resource_id) is None:
                raise NotFound(f"{resource_type}/{resource_id} is not known to this server.")
            versions, total = unit.history(resource_type, resource_id, since, count, offset)
        path = "/".join(p for p in (base, resource_type, resource_id, "_history") if p)
        kept = [(k, v) for k, v in (items or []) if k != "_offset"]
        return {"resourceType": "Bundle", "type": "history", "total": total,
                "link": _page_links(path, kept, offset, count, len(versions), total),
                "entry": [_history_entry(base, v) for v in versions]}

    # --- batch and transaction ------------------------------------------------------------

    def bundle(self, body: Any, base: str, permits: Permits | None = None) -> dict[str, Any]:
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
        if len(entries) > self.max_bundle_entries:
            raise PayloadTooLarge(f"The Bundle has {len(entries)} entries; this server takes at most "
                                  f"{self.max_bundle_entries}.")
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
                    "entry": [self._batch_entry(base, r) for r in requests]}
        return self._transaction(base, requests)

    def _batch_entry(self, base: str, request: _Request) -> dict[str, Any]:
        try:
            if request.error:
                raise request.error
            return self._perform(None, base, request, {})
        except RequestError as exc:
            return {"response": {"status": f"{exc.status} {exc.title}", "outcome": _error_outcome(exc)}}

    def _transaction(self, base: str, requests: list[_Request]) -> dict[str, Any]:
        for request in requests:
            if request.error:
                raise request.error
        checked = {r.index: self._checked(r.resource_type, r.resource) for r in requests if r.method in ("POST", "PUT")}
        log: list[Written] = []
        for attempt in range(3):
            try:
                with self.store.unit(write=True) as unit:
                    responses = self._run(unit, base, requests, checked, log, set())
                    for written in log:  # read into clinic records in the same transaction
                        self._followed(unit, written)
                break
            except (IntegrityError, _ClaimLost):  # a concurrent transaction claimed the same ifNoneExist: run again
                log.clear()
                if attempt == 2:
                    raise Conflict("The transaction kept meeting concurrent identical creates; retry it.") from None
            except RequestError as exc:
                raise type(exc)(f"The transaction failed at entry {_failed_at(exc)}and nothing was stored: "
                                f"{exc.detail}", exc.issues, **exc.extra) from None
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": responses}

    def export_record(self, unit: Unit, bundle: dict[str, Any], record_id: str) -> list[StoredResource]:
        """Store a clinic record's mapped (and already validated) Bundle in the caller's transaction.

        References to other records' resources may point ahead (a session stored before its plan):
        the ids are deterministic, so they resolve once the plan arrives.
        """
        requests = [_request_of(i, e) for i, e in enumerate(bundle["entry"])]
        for request in requests:
            if request.error:
                raise request.error
        checked: dict[int, tuple[dict[str, Any], list[Finding]]] = {
            r.index: (r.resource, []) for r in requests if r.method in ("POST", "PUT")}
        log: list[Written] = []
        ahead = {key for r in requests for _, ref in _references(r.resource, "") for key in [ref] if "/" in key}
        source = RECORD.set(record_id)  # their Provenance names the record
        try:
            self._run(unit, "", requests, checked, log, ahead)
        finally:
            RECORD.reset(source)
        for written in log:
            unit.link_record(written.resource.resource_type, written.resource.id, record_id)
        return [w.resource for w in log]

    def _run(self, unit: Unit, base: str, requests: list[_Request],
             checked: dict[int, tuple[dict[str, Any], list[Finding]]], log: list[Written],
             pending: set[str]) -> list[dict[str, Any]]:
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
                query = self._criteria_query(r.resource_type, r.if_none_exist, f"entry[{r.index}].ifNoneExist")
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
                responses[r.index] = self._perform(unit, base, r, names, checked.get(r.index), log)
                if r.method == "POST" and r.if_none_exist:  # race-free, as a single conditional create
                    query = self._criteria_query(r.resource_type, r.if_none_exist, f"entry[{r.index}].ifNoneExist")
                    _claim(unit, query, _normal_criteria(r.if_none_exist), log[-1].resource.pk)
        return [responses[r.index] for r in requests]

    def _perform(self, unit: Unit | None, base: str, r: _Request, names: dict[str, str],
                 checked: tuple[dict[str, Any], list[Finding]] | None = None,
                 log: list[Written] | None = None) -> dict[str, Any]:
        """One entry: inside a transaction's unit, or on its own (batch)."""
        try:
            if r.method == "GET":
                found = self.read(r.resource_type, r.resource_id or "") if unit is None else _unit_read(unit, r)
                return {"resource": found.content, "response": _response(base, found, 200)}
            if r.method == "DELETE":
                if unit is None:
                    stored = self.delete(r.resource_type, r.resource_id or "")
                else:
                    current = unit.get(r.resource_type, r.resource_id or "")
                    if current is None:
                        raise NotFound(f"{r.resource_type}/{r.resource_id} is not known to this server.")
                    stored = current if current.deleted else unit.write(r.resource_type, current.id, None, [], "DELETE")
                return {"response": {"status": "204 No Content", "etag": f'W/"{stored.version}"'}}
            if unit is None:
                resource = _rewrite(r.resource, names)
                if r.method == "POST":
                    written = self.create(r.resource_type, resource, r.if_none_exist)
                else:
                    written = self.update(r.resource_type, r.resource_id or "", resource, r.if_match)
                return {"response": _response(base, written.resource, written.status, written.findings)}
            resource, findings = checked or self._checked(r.resource_type, resource)
            resource = _rewrite(resource, names)
            resource["meta"] = _client_meta(resource.get("meta"))
            if r.method == "POST":
                new_id = names.get(r.full_url or "", f"/{uuid.uuid4()}").split("/")[-1]
                written = self._write(unit, r.resource_type, new_id, {k: v for k, v in resource.items() if k != "id"},
                                      findings, "POST", True, set(names.values()))
            else:
                current = unit.get(r.resource_type, r.resource_id or "")
                if r.if_match is not None and (current is None or current.version != r.if_match):
                    raise PreconditionFailed(f"entry[{r.index}]: ifMatch W/\"{r.if_match}\" does not match.")
                if resource.get("id") != r.resource_id:
                    raise BadRequest(f"entry[{r.index}]: the resource's id is not the id in request.url.",
                                     [Issue(f"Bundle.entry[{r.index}].resource.id", f"expected {r.resource_id}")])
                written = self._write(unit, r.resource_type, r.resource_id or "", resource, findings, "PUT",
                                      current is None or current.deleted, set(names.values()))
            if log is not None:
                log.append(written)
            return {"response": _response(base, written.resource, written.status, written.findings)}
        except RequestError as exc:
            exc.extra.setdefault("entry", r.index)
            raise

    # --- capability ------------------------------------------------------------------------

    def capability(self, base: str, profiles: dict[str, list[str]], software: dict[str, str]) -> dict[str, Any]:
        """The CapabilityStatement of what this server actually does."""
        resources = []
        for resource_type in TYPES:
            entry: dict[str, Any] = {
                "type": resource_type,
                "interaction": [{"code": c} for c in ("read", "vread", "update", "delete", "history-instance",
                                                      "history-type", "create", "search-type")],
                "versioning": "versioned-update", "readHistory": True, "updateCreate": True,
                "conditionalCreate": True, "conditionalUpdate": True, "conditionalDelete": "not-supported",
                "searchInclude": [f"{resource_type}:{p.name}" for p in params_of(resource_type).values()
                                  if p.kind == "reference"],
                "searchParam": [{"name": p.name, "type": p.kind,
                                 **({"documentation": p.description} if p.description else {})}
                                for p in params_of(resource_type).values()],
                "operation": [{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
            }
            if profiles.get(resource_type):
                entry["supportedProfile"] = profiles[resource_type]
            resources.append({k: v for k, v in entry.items() if v != []})  # ele-1: no empty arrays
        return {
            "resourceType": "CapabilityStatement", "status": "active", "date": software["date"], "kind": "instance",
            "software": {"name": software["name"], "version": software["version"]},
            "implementation": {"description": "Ketamine FHIR Bridge FHIR R4 facade", "url": base},
            "fhirVersion": "4.0.1", "format": ["application/fhir+json", "json"],
            "rest": [{"mode": "server", "security": SECURITY, "resource": resources,
                      "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
                      "operation": [{"name": "validate",
                                     "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}]}],
        }


def _claim(unit: Unit, query: Query, key: str, resource_pk: int) -> None:
    """Claim an If-None-Exist key for a just-written resource, dropping a claim left by a resource that
    no longer matches. Under PostgreSQL's READ COMMITTED that drop also removes the claim of a concurrent
    create that committed after our search, so search again: any match besides ours means we lost."""
    unit.release(query.resource_type, key)
    unit.claim(query.resource_type, key, resource_pk)
    if len(unit.search(query)[0]) > 1:
        raise _ClaimLost(key)


# --- Bundle requests ---------------------------------------------------------------------------

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


def _rewrite(node: Any, names: dict[str, str]) -> Any:
    """References to fullUrls of the Bundle become references to the stored resources."""
    if isinstance(node, list):
        return [_rewrite(v, names) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _rewrite(v, names) for k, v in node.items()}
    ref = out.get("reference")
    if isinstance(ref, str):
        if ref in names:
            out["reference"] = names[ref]
        elif ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
            raise NotFound(f"The reference {ref} names no entry of this Bundle.")
    return out


def _check_references(unit: Unit, resource: dict[str, Any], pending: set[str]) -> None:
    """Referential integrity on write, as HAPI enforces it: a relative reference to a type this
    server serves must name a resource it holds, or one the same transaction writes (`pending`);
    absolute URLs point elsewhere and are not checked."""
    missing = []
    for path, ref in _references(resource, resource.get("resourceType", "")):
        parts = ref.split("/_history/")[0].split("/")
        if len(parts) != 2 or parts[0] not in TYPES or "?" in ref or "/".join(parts) in pending:
            continue
        found = unit.get(parts[0], parts[1])
        if found is None or found.deleted:
            missing.append(Issue(path, f"{ref} is not a resource of this server"))
    if missing:
        raise BadRequest(f"The resource refers to resources this server does not hold: "
                         f"{', '.join(i.message.split(' ')[0] for i in missing)}.", missing)


def _references(node: Any, path: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            found.append((f"{path}.reference", node["reference"]))
        for key, value in node.items():
            if key != "contained":
                found.extend(_references(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_references(value, f"{path}[{i}]"))
    return found


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


# --- small helpers -----------------------------------------------------------------------------

def _client_meta(meta: Any) -> dict[str, Any]:
    """What a client may say in meta: not the server's versionId or lastUpdated."""
    if not isinstance(meta, dict):
        return {}
    return {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}


def _normal_criteria(criteria: str) -> str:
    items = sorted(parse_qsl(criteria.split("?", 1)[-1], keep_blank_values=True))
    return urlencode(items)[:1000]


def _as_warning(finding: Finding) -> dict[str, Any]:
    return {"severity": finding.severity, "field": finding.expression, "message": finding.message}


def _entry(base: str, resource: StoredResource, mode: str) -> dict[str, Any]:
    return {"fullUrl": f"{base}/{resource.resource_type}/{resource.id}", "resource": resource.content,
            "search": {"mode": mode}}


def _response(base: str, stored: StoredResource, status: int, findings: list[Finding] | None = None
              ) -> dict[str, Any]:
    text = {200: "200 OK", 201: "201 Created"}[status]
    out: dict[str, Any] = {"status": text,
                           "location": f"{stored.resource_type}/{stored.id}/_history/{stored.version}",
                           "etag": f'W/"{stored.version}"', "lastModified": instant(stored.last_updated)}
    if findings:
        out["outcome"] = operation_outcome(findings)
    return out


def _history_entry(base: str, v: StoredResource) -> dict[str, Any]:
    url = f"{v.resource_type}/{v.id}"
    entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if v.content is not None:
        entry["resource"] = v.content
    status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[v.method or "PUT"]
    if v.method == "PUT" and v.version == 1:
        status = "201 Created"
    entry["request"] = {"method": v.method, "url": url if v.method != "POST" else v.resource_type}
    entry["response"] = {"status": status, "etag": f'W/"{v.version}"', "lastModified": instant(v.last_updated)}
    return entry


def _page_links(path: str, items: list[tuple[str, str]], offset: int, count: int, shown: int,
                total: int | None) -> list[dict[str, str]]:
    def url(at: int) -> str:
        query = [(k, v) for k, v in items if k != "_count"] + [("_count", str(count))]
        if at:
            query.append(("_offset", str(at)))
        return f"{path}?{urlencode(query)}"

    links = [{"relation": "self", "url": url(offset)}]
    more = (offset + shown < total) if total is not None else shown == count and count > 0
    if more:
        links.append({"relation": "next", "url": url(offset + count)})
    if offset > 0:
        links.append({"relation": "previous", "url": url(max(0, offset - count))})
    return links


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    found = parse_range(raw.replace(" ", "+"))
    if found is None or "T" not in raw:
        raise BadRequest("_since must be a FHIR instant, e.g. 2026-03-02T09:00:00Z.", [Issue("_since", f"got {raw!r}")])
    return found[0]


def _bounded(args: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw):  # int('²') raises
        raise BadRequest(f"{name} must be an integer ≥ {low}.", [Issue(name, f"got {raw!r}")])
    return min(int(raw), high)


def _error_outcome(exc: RequestError) -> dict[str, Any]:
    if "operation_outcome" in exc.extra:
        return exc.extra["operation_outcome"]  # type: ignore[no-any-return]
    issues = [{"severity": "error", "code": "processing", "details": {"text": exc.detail}}]
    issues += [{"severity": "error", "code": "processing", "details": {"text": i.message}, "expression": [i.field]}
               for i in exc.issues]
    return {"resourceType": "OperationOutcome", "issue": issues}


__all__ = ["FhirServer", "MethodNotAllowed", "Written"]
