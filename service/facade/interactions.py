"""Interactions on single resources: read, vread, create, update, delete and their conditional forms.

Every write is validated by the profile validator first (errors: 422, nothing stored) and runs in
one database transaction that also versions the resource and rewrites its search index.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sqlalchemy.exc import IntegrityError

from service.errors import BadRequest, Conflict, Gone, Issue, NotFound, PreconditionFailed, Unprocessable
from service.facade.references import check_references
from service.search.parameters import TYPES
from service.search.query import Query, parse
from service.security.provenance import provenance
from service.store.resources import ResourceStore, StoredResource, Unit, instant
from service.validation.outcome import Finding, operation_outcome

ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

Validate = Callable[[dict[str, Any]], list[Finding]]
#: runs after a write, in its transaction, e.g. to read the resource into a clinic record; returns notes
AfterWrite = Callable[[Unit, StoredResource], list[str]]


class ClaimLost(Exception):
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


class Interactions:
    """The single-resource interactions, each in a database transaction of its own."""

    def __init__(self, store: ResourceStore, validate: Validate, after_write: AfterWrite | None = None) -> None:
        self.store = store
        self.validate = validate
        self.after_write = after_write

    def followed(self, unit: Unit, written: Written) -> Written:
        if self.after_write is not None:
            written.notes.extend(self.after_write(unit, written.resource))
        return written

    # --- checks ----------------------------------------------------------------------------

    @staticmethod
    def check_type(resource_type: str) -> None:
        if resource_type not in TYPES:
            raise NotFound(f"This server does not serve {resource_type} resources (it serves {', '.join(TYPES)}).")

    def checked(self, resource_type: str, body: Any) -> tuple[dict[str, Any], list[Finding]]:
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
        resource, findings = self.checked(resource_type, body)
        resource = {k: v for k, v in resource.items() if k != "id"}
        resource["meta"] = client_meta(resource.get("meta"))
        if if_none_exist is None:
            with self.store.unit(write=True) as unit:
                written = write(unit, resource_type, str(uuid.uuid4()), resource, findings, "POST", True)
                return self.followed(unit, written)
        return self._conditional_create(resource_type, resource, findings, if_none_exist)

    def _conditional_create(self, resource_type: str, resource: dict[str, Any], findings: list[Finding],
                            criteria: str) -> Written:
        query = criteria_query(resource_type, criteria, "If-None-Exist")
        key = normal_criteria(criteria)
        for _attempt in range(3):
            try:
                with self.store.unit(write=True) as unit:
                    matches, _ = unit.search(query)
                    if len(matches) > 1:
                        raise PreconditionFailed(f"If-None-Exist {criteria!r} matches {len(matches)} resources.")
                    if matches:
                        return Written(matches[0], False)
                    written = write(unit, resource_type, str(uuid.uuid4()), resource, findings, "POST", True)
                    claim(unit, query, key, written.resource.pk)
                    return self.followed(unit, written)
            except (IntegrityError, ClaimLost):
                continue  # a concurrent identical create won the claim: search again, now it is visible
        raise Conflict(f"Could not settle If-None-Exist {criteria!r} against concurrent writers; retry.")

    def update(self, resource_type: str, resource_id: str, body: Any, if_match: int | None = None) -> Written:
        self.check_type(resource_type)
        if not ID.match(resource_id):
            raise BadRequest(f"{resource_id!r} is not a FHIR id.", [Issue("id", "1-64 of A-Z a-z 0-9 - .")])
        if isinstance(body, dict) and body.get("id") != resource_id:
            raise BadRequest(f"The resource's id {body.get('id')!r} is not the id in the URL {resource_id!r}.",
                             [Issue("id", f"expected {resource_id}")])
        resource, findings = self.checked(resource_type, body)
        resource = {**resource, "meta": client_meta(resource.get("meta"))}
        with self.store.unit(write=True) as unit:
            current = unit.get(resource_type, resource_id)
            if if_match is not None and (current is None or current.deleted or current.version != if_match):
                at = "no current version" if current is None or current.deleted else f"version {current.version}"
                raise PreconditionFailed(f"If-Match W/\"{if_match}\" does not match: "
                                         f"{resource_type}/{resource_id} is at {at}.")
            created = current is None or current.deleted
            written = write(unit, resource_type, resource_id, resource, findings, "PUT", created)
            return self.followed(unit, written)

    def conditional_update(self, resource_type: str, criteria: str, body: Any) -> Written:
        self.check_type(resource_type)
        query = criteria_query(resource_type, criteria, "the conditional update")
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


def write(unit: Unit, resource_type: str, resource_id: str, resource: dict[str, Any], findings: list[Finding],
          method: str, created: bool, pending: set[str] | None = None) -> Written:
    check_references(unit, resource, pending or set())
    stored = unit.write(resource_type, resource_id, resource, [_as_warning(f) for f in findings], method)
    if resource_type != "Provenance":  # who sent it, or which record it came from; same transaction
        target = f"{resource_type}/{stored.id}/_history/{stored.version}"
        unit.write("Provenance", str(uuid.uuid4()), provenance(target, created, instant(stored.last_updated)),
                   [], "POST")
    return Written(stored, created, findings)


def criteria_query(resource_type: str, criteria: str, what: str) -> Query:
    items = parse_qsl(criteria.split("?", 1)[-1], keep_blank_values=True)
    if not items:
        raise BadRequest(f"{what} has no search criteria.", [Issue(what, "expected e.g. identifier=system|value")])
    query = parse(resource_type, items)
    query.count, query.total = 2, False
    return query


def claim(unit: Unit, query: Query, key: str, resource_pk: int) -> None:
    """Claim an If-None-Exist key for a just-written resource, dropping a claim left by a resource that
    no longer matches. Under PostgreSQL's READ COMMITTED that drop also removes the claim of a concurrent
    create that committed after our search, so search again: any match besides ours means we lost."""
    unit.release(query.resource_type, key)
    unit.claim(query.resource_type, key, resource_pk)
    if len(unit.search(query)[0]) > 1:
        raise ClaimLost(key)


def client_meta(meta: Any) -> dict[str, Any]:
    """What a client may say in meta: not the server's versionId or lastUpdated."""
    if not isinstance(meta, dict):
        return {}
    return {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}


def normal_criteria(criteria: str) -> str:
    items = sorted(parse_qsl(criteria.split("?", 1)[-1], keep_blank_values=True))
    return urlencode(items)[:1000]


def _as_warning(finding: Finding) -> dict[str, Any]:
    return {"severity": finding.severity, "field": finding.expression, "message": finding.message}
