"""Deny by default on /api and /fhir: every request needs a bearer token whose scopes cover the route,
and every request there leaves an AuditEvent. Open: /health, /ready, GET /fhir/metadata.

The decisions are service/security's; this module only says which interaction each route is. A route
under /api or /fhir that is in no table below is refused (403) even to a valid token: a new endpoint
is closed until someone decides who may use it.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, request
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from service.conformance.package import CONFORMANCE_TYPES
from service.errors import Contention, Forbidden, ServiceUnavailable, TooManyRequests, Unauthorized
from service.search.parameters import TYPES
from service.security import Security, audit
from service.security.audit import Access
from service.security.authn import Principal
from service.security.scopes import AUDIT, EXCHANGE, RECORDS, Grant, insufficient
from service.store.engine import BEFORE_COMMIT, BEFORE_TURN, WRITTEN, reading
from service.store.resources import Unit
from service.store.stored import StoredResource
from service.web import auditing, current, errors, limits

log = logging.getLogger(__name__)
SECURED = ("/api/", "/fhir")
OPEN = {("GET", "/fhir/metadata"), ("HEAD", "/fhir/metadata")}
#: endpoint → FHIR restful interaction (what the audit calls it, and what scope letters it needs)
INTERACTIONS = {
    "fhir_api.read": "read", "fhir_api.vread": "vread", "fhir_api.history_instance": "history-instance",
    "fhir_api.search": "search-type", "fhir_api.history_type": "history-type",
    "fhir_api.history_system": "history-system", "fhir_api.create": "create", "fhir_api.update": "update",
    "fhir_api.conditional_update": "update", "fhir_api.delete": "delete", "fhir_api.conditional_delete": "delete",
    "fhir_api.bundle": "transaction", "fhir_api.validate_any": "operation", "fhir_api.validate_typed": "operation",
    "domain_api.create": "create", "domain_api.read": "read", "domain_api.replace": "update",
    "domain_api.versions": "history-instance", "domain_api.as_fhir": "read", "domain_api.preview": "operation",
    "domain_api.search": "search-type",
    "audit_api.search": "search-type", "audit_api.read": "read",
}
LETTERS = {"read": "r", "vread": "r", "history-instance": "r", "search-type": "s", "history-type": "s",
           "history-system": "s", "create": "c", "update": "u", "delete": "d"}
#: blueprints whose routes all concern one scope resource (any new route of theirs is covered by method)
BLUEPRINT_RESOURCE = {"domain_api": RECORDS, "exchange_api": EXCHANGE, "audit_api": AUDIT}
BY_METHOD = {"GET": "read", "HEAD": "read", "POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
#: routes whose audit event commits in their write's own transaction (_audit_write); every other event is
#: written once the answer is decided
#: routes that only read: authenticating the caller, the read itself and the audit's patient lookup share one read
#: transaction (store/engine.reading), closed before the audit event is written
READ_ONLY = frozenset({"fhir_api.read", "fhir_api.vread", "fhir_api.history_instance", "fhir_api.search",
                       "fhir_api.history_type", "fhir_api.history_system", "domain_api.read", "domain_api.versions",
                       "domain_api.as_fhir", "domain_api.search", "audit_api.search", "audit_api.read"})
IN_WRITE = frozenset({"fhir_api.create", "fhir_api.update", "fhir_api.conditional_update", "fhir_api.delete",
                      "domain_api.create", "domain_api.replace"})


def init_app(app: Flask, security: Security) -> None:
    app.extensions["kfhir_security"] = security
    app.before_request(_guard)
    app.after_request(_audit)
    app.teardown_request(_unhook)
    app.teardown_request(_stop_reading)


def security() -> Security:
    found: Security = current_app.extensions["kfhir_security"]
    return found


def secured() -> bool:
    path = request.path
    return _api_path(path) and (request.method, path) not in OPEN


def _under_api() -> bool:
    return _api_path(request.path)


def _api_path(path: str) -> bool:
    return path.startswith(SECURED[0]) or path == "/fhir" or path.startswith("/fhir/")


def principal() -> Principal:
    """The caller of this request (the guard ran, so there is one)."""
    found: Principal = g.principal
    return found


def author() -> tuple[str, str] | None:
    """(issuer, client id) of the caller, whom the Provenance of what this request writes names as author."""
    found = g.get("principal")
    return (found.issuer, found.client_id) if found is not None else None


def interaction() -> str:
    endpoint = request.endpoint or ""
    if endpoint in INTERACTIONS:
        return INTERACTIONS[endpoint]
    return BY_METHOD.get(request.method, "operation")


def _guard() -> None:
    if not secured():
        return
    endpoint = request.endpoint  # each read of request or g goes through a context-local proxy (~1 µs)
    failures, address = limits.auth_failures(), f"address:{request.remote_addr}"
    wait = failures.waiting(address)
    if wait:  # before the token is looked at: no key lookup, no JWKS fetch, no audit row per request
        raise TooManyRequests(f"More than {limits.FAILED_AUTH_PER_MINUTE} failed authentications a minute from "
                              "this address; try again later.", retry_after=math.ceil(wait))
    if endpoint in READ_ONLY:
        g.kfhir_reading = stack = ExitStack()
        stack.enter_context(reading(current.runtime().engine))
    guard = security()
    try:
        principal = guard.authenticator.authenticate(request.headers.get("Authorization"))
    except Unauthorized:
        failures.take(address)
        raise
    g.principal = principal
    g.client_id = principal.client_id  # for the log lines (service/web/logs.py)
    if endpoint is None:
        return  # no such route: routing answers 404 or 405 now that the caller is known
    _authorize(principal.grant, endpoint, request.view_args or {})
    if endpoint in IN_WRITE:
        guard.clients.pepper()  # made (app built before the migration) before the write's unit, not inside it
        BEFORE_COMMIT.set(_audit_write)
        BEFORE_TURN.set(_audit_ahead)


def _authorize(grant: Grant, endpoint: str, args: dict[str, Any]) -> None:
    blueprint = endpoint.partition(".")[0]
    what = interaction()
    letters = LETTERS.get(what, "")
    if blueprint == "fhir_api":
        resource_type = args.get("resource_type")
        if what == "history-system":
            for name in TYPES:
                grant.require(name, "s")
        elif resource_type and resource_type not in CONFORMANCE_TYPES and letters:
            # If-None-Exist read off the environ: request.headers' miss raised and dropped a KeyError each read
            conditional = endpoint == "fhir_api.conditional_update" or request.environ.get("HTTP_IF_NONE_EXIST")
            grant.require(resource_type, letters + ("s" if conditional else ""))
        elif what == "operation":  # $validate: the resource's own type is checked again once the body is read
            may_validate(grant, resource_type)
        # Bundles: each entry is checked by the FHIR core; our IG's conformance resources (no patient data in
        # them): any authenticated client
        return
    resource = BLUEPRINT_RESOURCE.get(blueprint)
    if resource is None:
        raise Forbidden("This endpoint is not open to API clients.")
    grant.require(resource, "c" if endpoint == "domain_api.preview" else letters or "r")


def may_validate(grant: Grant, resource_type: str | None) -> None:
    """$validate costs CPU and memory: only for a client that may create, read or update the resource's type
    (a type this server does not store, or none named yet: any type it does). Once let anyone with a token
    (even `system/AuditEvent.rs`) make the server walk a 5 MB document."""
    types = [resource_type] if resource_type in TYPES else list(TYPES)
    if not any(grant.allows(name, letter) for name in types for letter in "cru"):
        raise insufficient(resource_type if resource_type in TYPES else "*", "r", "$validate")


def can_read(resource_type: str) -> bool:
    """For the FHIR core: may this request's caller see resources of this type (`_include` targets)?"""
    return principal().grant.allows(resource_type, "r")


def may(resource_type: str, letters: str) -> bool:
    """For the FHIR core: does this request's caller hold these letters on this type (Bundle entries)?"""
    return principal().grant.allows(resource_type, letters)


#: every /api and /fhir answer: patient data is never kept by browsers or proxies, and never sniffed as HTML
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _identify_patients(access: Access) -> None:
    """The identifiers of the patients `access` names by reference, for the audit's hash: one unit (the request's
    read transaction, when it has one), where a read noted those its rows name (Unit.read); the others read in one
    statement."""
    with current.runtime().resources.unit() as unit:
        named = unit.named_patients()
        auditing.identify_patients(
            access, lambda patient_id: _identifier(named[patient_id]) if patient_id in named
            else _identifier_of(unit.get("Patient", patient_id)),
            lambda ids: unit.prefetch([("Patient", i) for i in ids if i not in named]))


def _identifier_of(stored: StoredResource | None) -> tuple[str, str] | None:
    return _identifier((stored.content or {}).get("identifier")) if stored is not None else None


def _identifier(identifiers: Any) -> tuple[str, str] | None:
    """(system, value) of a Patient's first identifier with a value."""
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if isinstance(identifier, dict) and identifier.get("value"):
            return str(identifier.get("system") or ""), str(identifier["value"])
    return None


@dataclass(frozen=True)
class _Ahead:
    """_audit_write's event made before the write's unit (_audit_ahead) for an answer of this id and status, and the
    identifiers of the patients it names by reference as they were read then (by id)."""

    id: str
    status: int
    looked: dict[str, tuple[str, str] | None]
    event: audit.Ahead


def _audit_ahead(item: Any, created: bool, read: Mapping[Any, Any]) -> None:
    """_audit_write's event for a write about to answer with `item`, made before its unit of work waits for the
    writers' turn (store/engine.BEFORE_TURN): in the unit only its id and time are filled in, if the answer is the
    same and so are the patients it names (~0.5 ms of CPU a record where every other writer waits). `read`: rows
    read before the unit, the patients' among them; others are read here."""
    g.kfhir_audit_ahead = None
    log = security().audit
    if log.engine.dialect.name != "sqlite":  # sent with the COMMIT there: nothing to make ahead, nothing to read
        return
    answer = auditing.written_answer([(item, created)])
    if g.get("kfhir_audited") is not None or answer is None or not isinstance(answer[0], dict) or \
            answer[0].get("resourceType") == "Patient":  # names itself, not stored yet: looked up in the unit
        return
    body, status = answer
    looked: dict[str, tuple[str, str] | None] = {}
    try:
        access = auditing.access_of(body, status, g.get("principal"), interaction())
        with ExitStack() as stack:
            units: list[Unit] = []  # a read unit opened only for a patient not read already

            def identifier_of(patient_id: str) -> tuple[str, str] | None:
                stored = read.get(("Patient", patient_id))
                if stored is None:
                    units[:] = units or [stack.enter_context(current.runtime().resources.unit())]
                    stored = units[0].get("Patient", patient_id)
                looked[patient_id] = found = _identifier_of(stored)
                return found

            auditing.identify_patients(access, identifier_of)
        made = log.ahead(access)
    except Exception:  # noqa: BLE001 - the unit makes the event itself, and says why if it cannot
        return
    if made is not None:
        g.kfhir_audit_ahead = _Ahead(str(body.get("id")), status, looked, made)


def _audit_write(current: Session) -> None:
    """The request's audit event, inside the first of its write transactions that wrote what the route answers
    with, just before it commits (store/engine.BEFORE_COMMIT). A change whose event cannot be written is refused
    whole (503): a change without its event is what this prevents."""
    if g.get("kfhir_audited") is not None:
        return
    answer = auditing.written_answer(current.info[WRITTEN])
    if answer is None:
        return
    body, status = answer
    ahead: _Ahead | None = g.get("kfhir_audit_ahead")
    if ahead is not None and status == ahead.status and isinstance(body, dict) and body.get("id") == ahead.id:
        try:
            unit = Unit.on(current) if ahead.looked else None  # the write's own: its reference check read them
            if all(_identifier_of(unit.get("Patient", i)) == found for i, found in ahead.looked.items() if unit) \
                    and security().audit.record_ahead(current, ahead.event):
                _audited(current, status)
                return
        except Exception as exc:
            raise _unrecorded(exc) from exc
    try:
        access = auditing.access_of(body, status, g.get("principal"), interaction())
        unit = Unit.on(current)  # the write's own: the patients it refers to were read by its reference check
        auditing.identify_patients(access, lambda patient_id: _identifier_of(unit.get("Patient", patient_id)))
    except (IntegrityError, OperationalError, Contention):  # the write's last rows, sent with a patient's lookup
        raise  # (PostgreSQL: store/pipeline.py), failed: the write's failure, as at its COMMIT (settled, Intake.submit)
    except Exception as exc:
        raise _unrecorded(exc) from exc
    try:  # the event's own row: its refusal is the audit's (on SQLite sent here, on PostgreSQL with the COMMIT)
        security().audit.record_in(current, access, _unrecorded)
    except Exception as exc:
        raise _unrecorded(exc) from exc
    _audited(current, status)


#: Session.info key of a write transaction that holds the request's audit event (_audit_write)
_AUDITED = "kfhir_audited"


def _audited(current: Session, status: int) -> None:
    """The request's event is in `current` (its answer `status`): no other is written, unless it rolls back."""
    g.kfhir_audited = status
    current.info[_AUDITED] = True


@event.listens_for(Session, "after_rollback")
def _unaudited(current: Session) -> None:
    """A transaction holding the request's event rolled back (on PostgreSQL a write's last rows fail with its
    COMMIT, after the event: store/pipeline.py): the event went with it, so the write sent again (a record's
    Contention, a facade update's retry) writes its own."""
    if current.info.pop(_AUDITED, None) and has_request_context():
        g.pop("kfhir_audited", None)


def _unrecorded(exc: Exception) -> ServiceUnavailable:
    """The refusal of a change whose audit event could not be written (`exc`: why): the write rolls back whole."""
    log.error("an AuditEvent could not be recorded; the change it records is refused", exc_info=exc)
    return ServiceUnavailable("The audit trail could not record this change, so nothing was changed; try again.")


def _unhook(_error: BaseException | None) -> None:
    BEFORE_COMMIT.set(None)
    BEFORE_TURN.set(None)


def _stop_reading(_error: BaseException | None = None) -> None:
    """End the request's shared read transaction, if it has one (a read only: nothing to keep or lose)."""
    stack = g.pop("kfhir_reading", None)
    if stack is not None:
        try:
            stack.close()
        except Exception:  # an aborted read transaction: it ends either way
            log.warning("a request's read transaction did not end cleanly", exc_info=True)


def _audit(response: Response) -> Response:
    if not secured() or g.pop("kfhir_audited", None) == response.status_code:
        return _api_headers(response)  # not audited, or its event committed with its write (_audit_write)
    try:
        access = auditing.access(response, g.get("principal"), interaction())
        _identify_patients(access)
        _stop_reading()  # before the event's write: a read needs no snapshot held while it waits for its commit
        if access.client_id is None:  # refused before anyone was identified: one event per burst of them
            security().audit.record_refused(access, f"address:{request.remote_addr}")
        else:
            security().audit.record(access)
    except Exception:
        log.exception("an AuditEvent could not be recorded")
        if _discloses(response) and not current.runtime().settings.answer_unaudited_reads:
            # the answer is not sent yet: nothing leaves unrecorded (KFHIR_ANSWER_UNAUDITED_READS=1: availability first)
            response = errors.render(ServiceUnavailable("The audit trail could not record this access, so nothing "
                                                        "is disclosed; try again.", retry_after=1))
    return _api_headers(response)


def _api_headers(response: Response) -> Response:
    """API_HEADERS, each unless the route set it: the names it set looked at once, not by Headers.setdefault, whose
    miss raises and drops a werkzeug exception for each (~10 K instructions a header)."""
    if _under_api():
        present = {name.lower() for name, _ in response.headers}
        for name, value in API_HEADERS.items():
            if name.lower() not in present:
                response.headers.add(name, value)
    return response


def _discloses(response: Response) -> bool:
    """An answer that would show stored data and changed nothing: a successful read, search or history, a
    conditional create that found its match (200: nothing created), a batch or transaction of reads only. A
    write's event commits with the write or its change is refused whole; an error shows nothing stored."""
    if response.status_code >= 400:
        return False
    if request.endpoint in READ_ONLY or request.method in ("GET", "HEAD"):
        return True
    if request.endpoint == "fhir_api.create":
        return response.status_code == 200
    return request.endpoint == "fhir_api.bundle" and _reads_only(g.get("kfhir_body"))


def _reads_only(bundle: Any) -> bool:
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    return isinstance(entries, list) and all(
        isinstance(e, dict) and isinstance(e.get("request"), dict) and e["request"].get("method") in ("GET", "HEAD")
        for e in entries)
