"""Interactions on single resources (read, vread, create, update, delete), each written once on a unit of work.

A request sent alone runs the operation in a database transaction of its own (Interactions); a transaction
Bundle runs the same operations for its entries in its one unit (bundles.py). So an entry answers as the
request would alone, as R4 asks (http.html#transaction: entries are "processed separately as if they were
an individual interaction ... subject to the normal processing for each, including the meta element,
verification and version aware updates"). Every write is validated by the profile validator first (errors:
422, nothing stored) and versions the resource and rewrites its search index in the same transaction.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode

from sqlalchemy.exc import IntegrityError

from service.errors import BadRequest, Conflict, Gone, Issue, NotFound, PreconditionFailed
from service.facade.policy import Validate, judge
from service.facade.provenances import ProvenanceAhead, provenance_ahead, write_provenance
from service.facade.references import check_references, check_referrers
from service.fhirjson import Finding, etag, refuse_errors, rewritten
from service.search.parameters import TYPES
from service.search.query import Query, parse
from service.store.batch import Drafted, draft
from service.store.engine import answering
from service.store.records import utcnow
from service.store.resources import ResourceStore, Unit
from service.store.stored import StoredResource, versioned

ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

class ReadEarly(Protocol):
    """What an AfterWrite worked out before a create's unit of work began."""

    @property
    def rows(self) -> Mapping[tuple[str, str], StoredResource | None]:
        """The stored resources it read (None: an id not held), which the unit adopts while current (Unit.adopt)."""


class AfterWrite(Protocol):
    """Runs after a write, in its transaction, e.g. to read the resource into a clinic record; returns notes."""

    def __call__(self, unit: Unit, stored: StoredResource, ahead: Any = None) -> list[str]:
        """`ahead`: what ahead() gave for the resource, if the write is a create that asked it."""

    def ahead(self, store: ResourceStore, content: dict[str, Any]) -> ReadEarly | None:
        """What __call__ can work out before the write's unit of work begins (every other writer waits for a unit),
        for `content`, a resource about to be created, as it will be stored; None: nothing."""

#: a Bundle's fullUrls (urn:uuid:…, Type/id) → the Type/id each is stored as; empty for a request sent alone
Names = dict[str, str]
#: a resource as written: its references rewritten, those references, and its Drafted index values and text
Ahead = tuple[dict[str, Any], list[tuple[str, str]], Drafted]


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


@dataclass(frozen=True)
class Prepared:
    """A resource checked before any unit of work, as it will be written (references not yet rewritten)."""

    resource_type: str
    resource: dict[str, Any]
    findings: list[Finding]   # warnings and information: errors refused it


@dataclass(frozen=True)
class Condition:
    """If-None-Exist (a Bundle entry's ifNoneExist): the search, and the criteria as claimed in the database."""

    query: Query
    criteria: str
    key: str


#: How many times a write meeting a concurrent one on a unique key (the same version of a resource, a new id, an
#: If-None-Exist claim) is tried before a 409. PostgreSQL's writers do not take turns as SQLite's do: two updates of
#: one resource both read version n and both write n + 1, and the second's INSERT fails once the first commits;
#: tried again, it reads n + 1 and writes n + 2, as it would have had it come a moment later (with If-Match, it then
#: fails the precondition: 412). k writers at once settle in at most k attempts.
SETTLE_ATTEMPTS = 8
T = TypeVar("T")


def settled(attempt: Callable[[], T], conflict: str) -> T:
    """`attempt()` (one unit of work), again when it meets a concurrent writer on a unique key or a claim, up to
    SETTLE_ATTEMPTS times; then 409 with `conflict`."""
    for _attempt in range(SETTLE_ATTEMPTS):
        try:
            return attempt()
        except (IntegrityError, ClaimLost):
            continue
    raise Conflict(conflict)


class Interactions:
    """The single-resource interactions, each in a database transaction of its own."""

    def __init__(self, store: ResourceStore, validate: Validate, after_write: AfterWrite | None = None) -> None:
        self.store = store
        self.validate = validate
        self.after_write = after_write

    @staticmethod
    def check_type(resource_type: str) -> None:
        if resource_type not in TYPES:
            raise NotFound(f"This server does not serve {resource_type} resources (it serves {', '.join(TYPES)}).")

    def prepare(self, resource_type: str, body: Any, resource_id: str | None = None) -> Prepared:
        """A create's (`resource_id` None) or an update's body, checked: the id against the URL's, the type
        against the URL's, the content against the profile policy.py holds it to (errors: 422); then shaped()."""
        if resource_id is not None:
            if not ID.match(resource_id):
                raise BadRequest(f"{resource_id!r} is not a FHIR id.", [Issue("id", "1-64 of A-Z a-z 0-9 - .")])
            if isinstance(body, dict) and body.get("id") != resource_id:
                raise BadRequest(f"The resource's id {body.get('id')!r} is not the id in the URL {resource_id!r}.",
                                 [Issue("id", f"expected {resource_id}")])
        if not isinstance(body, dict):
            raise BadRequest("The body must be a JSON object (a FHIR resource).", [Issue("$", "expected an object")])
        if body.get("resourceType") != resource_type:
            raise BadRequest(f"The URL names {resource_type} but the resource is {body.get('resourceType')!r}.",
                             [Issue("resourceType", f"expected {resource_type}")])
        findings = judge(body, self.validate)
        refuse_errors(findings, f"The {resource_type} does not conform to its profile.")
        return shaped(resource_type, body, findings, resource_id)

    def followed(self, unit: Unit, written: Written, ahead: Any = None) -> Written:
        if self.after_write is not None:
            written.notes.extend(self.after_write(unit, written.resource, ahead))
        return written

    # --- requests sent alone: each the operation below in a unit of its own -----------------

    def read(self, resource_type: str, resource_id: str, version: int | None = None) -> StoredResource:
        self.check_type(resource_type)
        with self.store.unit() as unit:
            return read_in(unit, resource_type, resource_id, version)

    def create(self, resource_type: str, body: Any, if_none_exist: str | None = None) -> Written:
        self.check_type(resource_type)
        prepared = self.prepare(resource_type, body)
        if if_none_exist is None:
            new_id = str(uuid.uuid4())
            early = drafted(prepared)
            # the version as stored, made once: read back and answered before the unit, stamped in it with its time
            made = versioned(early[0], new_id, 1, now := utcnow())
            told = provenance_ahead(self.store.author, f"{resource_type}/{new_id}/_history/1")
            ahead = None
            if self.after_write is not None:  # out of the unit what can be: the clinic record it is read into
                ahead = self.after_write.ahead(self.store, made)
            answering(StoredResource(0, resource_type, new_id, 1, False, now, made, [], None, "POST"), True,
                      ahead.rows if ahead is not None else None)  # what it answers with, before its unit
            # its rows, its Provenance's and the record it is read into sent together: one statement a table
            with self.store.unit(write=True) as unit, unit.batch():
                if ahead is not None:  # the rows it read, its references' among them: not read again if unchanged
                    unit.adopt(ahead.rows)
                return self.followed(unit, create_in(unit, prepared, new_id, {}, ahead=early, checked=False,
                                                     made=made, told=told), ahead)
        when = condition(resource_type, if_none_exist, "If-None-Exist")

        def attempt() -> Written:  # after a concurrent identical create won the claim, it finds that one
            with self.store.unit(write=True) as unit:
                found = match_in(unit, when)
                if found is not None:
                    return Written(found, False)
                return self.followed(unit, create_in(unit, prepared, str(uuid.uuid4()), {}, when))
        return settled(attempt, f"Could not settle If-None-Exist {if_none_exist!r} against concurrent writers; "
                                "retry.")

    def update(self, resource_type: str, resource_id: str, body: Any, if_match: int | None = None) -> Written:
        self.check_type(resource_type)
        prepared = self.prepare(resource_type, body, resource_id)

        def attempt() -> Written:  # after a concurrent writer stored the version (or made the id), it writes after it
            early = drafted(prepared)  # anew each attempt: a unit that failed may have filled in its rows' keys
            with self.store.unit(write=True) as unit, unit.batch():  # as create's
                return self.followed(unit, update_in(unit, prepared, resource_id, if_match, {}, early, checked=False))
        return settled(attempt, f"{resource_type}/{resource_id} kept meeting concurrent writers; retry.")

    def conditional_update(self, resource_type: str, criteria: str, body: Any) -> Written:
        self.check_type(resource_type)
        query = condition(resource_type, criteria, "the conditional update").query
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

        def attempt() -> StoredResource:  # after a concurrent writer stored the version, it reads it (deleted: done)
            with self.store.unit(write=True) as unit:
                return delete_in(unit, resource_type, resource_id)
        return settled(attempt, f"{resource_type}/{resource_id} kept meeting concurrent writers; retry.")


# --- the operations on a unit of work, for a request alone and for a Bundle entry alike ------------

def read_in(unit: Unit, resource_type: str, resource_id: str, version: int | None = None) -> StoredResource:
    """read, or vread with a `version` (http.html#read, #vread): 404 unknown, 410 deleted."""
    found = unit.read(resource_type, resource_id) if version is None else unit.version(
        resource_type, resource_id, version)
    if found is None:
        what = f"{resource_type}/{resource_id}" + (f"/_history/{version}" if version is not None else "")
        raise NotFound(f"{what} is not known to this server.")
    if found.deleted:
        raise Gone(f"{resource_type}/{resource_id} was deleted (version {found.version}).")
    return found


def match_in(unit: Unit, when: Condition) -> StoredResource | None:
    """The resource a conditional create finds instead of creating one (http.html#ccreate): 412 if several.
    Asked again before the unit writes (a record's people: keep_current, then its export), the answer is the
    same, so it is kept (Unit.matched)."""
    key = (when.query.resource_type, when.criteria)  # as written: `key` is cut at 1,000 characters
    if key in unit.matched:
        return unit.matched[key]
    matches, _ = unit.search(when.query)
    if len(matches) > 1:
        raise PreconditionFailed(f"If-None-Exist {when.criteria!r} matches {len(matches)} resources.")
    unit.matched[key] = found = matches[0] if matches else None
    return found


def matches_still(unit: Unit, seen: list[tuple[Condition, StoredResource | None]]) -> bool:
    """Whether match_in would find each `found` of `seen` (the same version: the same content) again for its condition
    in `unit`, which then remembers those found, up to the first it would not: those whose condition is one identifier
    asked in one statement (Unit.found_keys), the resources not read."""
    if not seen:
        return True
    for (when, found), keys in zip(seen, unit.found_keys([when.query for when, _ in seen]), strict=True):
        if keys is None:
            if _seen(match_in(unit, when)) != _seen(found):
                return False
            continue
        if keys != ([] if found is None else [_seen(found)]):
            return False
        unit.matched[when.query.resource_type, when.criteria] = found
    return True


def _seen(found: StoredResource | None) -> tuple[str, int, bool] | None:
    return None if found is None else (found.id, found.version, found.deleted)


def create_in(unit: Unit, prepared: Prepared, new_id: str, names: Names, when: Condition | None = None,
              ahead: Ahead | None = None, checked: bool = True, made: dict[str, Any] | None = None,
              told: ProvenanceAhead | None = None) -> Written:
    """create under the server's `new_id`; for a conditional create (`when`), claim its criteria. `made`: the
    resource of `ahead` versioned() as `new_id`'s first version already (stamped with the unit's time as written);
    `told`: its Provenance, as provenance_ahead drafted it."""
    written = _write(unit, prepared, new_id, "POST", True, names, ahead, checked, made, told)
    if when is not None:
        _claim(unit, when, written.resource.id)
    return written


def update_in(unit: Unit, prepared: Prepared, resource_id: str, if_match: int | None, names: Names,
              ahead: Ahead | None = None, checked: bool = True) -> Written:
    """update, or create at a client's id (http.html#update); `if_match` must name the current version
    (http.html#concurrency): a deleted resource has none (a read answers 410), so it fails there too."""
    current = unit.get(prepared.resource_type, resource_id)
    if if_match is not None and (current is None or current.deleted or current.version != if_match):
        at = "no current version" if current is None or current.deleted else f"version {current.version}"
        raise PreconditionFailed(f"If-Match {etag(if_match)} does not match: "
                                 f"{prepared.resource_type}/{resource_id} is at {at}.")
    return _write(unit, prepared, resource_id, "PUT", current is None or current.deleted, names, ahead, checked)


def delete_in(unit: Unit, resource_type: str, resource_id: str, check: bool = True) -> StoredResource:
    """delete (http.html#delete): 404 unknown; deleting a deleted resource changes nothing; 409 while others
    refer to it (`check`; a transaction checks once all its deletes are done, so it may delete them together)."""
    current = unit.get(resource_type, resource_id)
    if current is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known to this server.")
    if current.deleted:
        return current
    if check:
        check_referrers(unit, [f"{resource_type}/{resource_id}"])
    return unit.write(resource_type, resource_id, None, [], "DELETE")


def _write(unit: Unit, prepared: Prepared, resource_id: str, method: str, created: bool, names: Names,
           ahead: Ahead | None = None, checked: bool = True, made: dict[str, Any] | None = None,
           told: ProvenanceAhead | None = None) -> Written:
    """`ahead`: the write's resource as `written_ahead(prepared, names)` made it, before the unit began, or as
    `drafted(prepared)` did (`checked` False: its references are checked here)."""
    resource, found, early = ahead or (*rewritten(prepared.resource, names), None)  # fullUrls → stored ids
    if ahead is None or not checked:  # a written_ahead resource was checked by it
        # a clinic record's resources may refer ahead (a session stored before its plan): their ids are
        # deterministic, so they resolve once it arrives; only a placeholder naming no entry is refused (export_record)
        check_references(unit, resource, set(names.values()), found, exists=unit.record_id is None)
    # a POST's id is a UUID this server just made (create_in): no row can hold it yet
    # a record's resources name it as they are written (export_record)
    stored = unit.write(prepared.resource_type, resource_id, resource if made is None else made,
                        [_as_warning(f) for f in prepared.findings], method, record_id=unit.record_id,
                        new=method == "POST", references=found, drafted=early, stamped=made is not None)
    if prepared.resource_type != "Provenance":  # who sent it, or which record it came from; same transaction
        target = f"{prepared.resource_type}/{stored.id}/_history/{stored.version}"
        if unit.provenance is not None:  # a Bundle's or a record's: one Provenance for the whole write (bundles.py)
            unit.provenance.append((target, created, stored.last_updated))
        else:
            write_provenance(unit, [(target, created, stored.last_updated)], told)
    return Written(stored, created, prepared.findings)


def written_ahead(unit: Unit, prepared: Prepared, names: Names, rest: str | None = None) -> Ahead:
    """A clinic record's resource as `_write` writes it under `names`, worked out before its unit of work: its
    references rewritten and their placeholders checked (references to stored resources are not: a record's may
    refer ahead), its index values and JSON text (`rest`: batch.rest_of of it, when known). Pure: the same for the
    same `prepared` and `names`."""
    resource, found = rewritten(prepared.resource, names)
    check_references(unit, resource, set(names.values()), found, exists=False)
    return resource, found, draft(resource, found, rest)


def drafted(prepared: Prepared) -> Ahead:
    """A request's resource as `_write` writes it (no fullUrl to rewrite), its index values and JSON text worked out
    before its unit of work, which every other SQLite writer waits for: ~0.3 ms of CPU a served create. Its
    references are checked in the unit (`checked` False), where the rows they name are read."""
    resource, found = rewritten(prepared.resource, {})
    return resource, found, draft(resource, found)


def _claim(unit: Unit, when: Condition, resource_id: str) -> None:
    """Claim an If-None-Exist key for a just-written resource, dropping a claim left by a resource that
    no longer matches. Under PostgreSQL's READ COMMITTED that drop also removes the claim of a concurrent
    create that committed after our search, so search again: any match besides ours means we lost."""
    unit.release(when.query.resource_type, when.key)
    unit.claim(when.query.resource_type, when.key, resource_id)
    if len(unit.search(when.query)[0]) > 1:
        raise ClaimLost(when.key)


# --- small helpers -----------------------------------------------------------------------------

def shaped(resource_type: str, resource: dict[str, Any], findings: list[Finding],
           resource_id: str | None = None) -> Prepared:
    """What a client may not say left out: a create's id (http.html#create: the server assigns it) and the
    server's meta.versionId and meta.lastUpdated."""
    kept = dict(resource)  # in C, where a comprehension tested each member (~10 a clinic record)
    if resource_id is None:
        kept.pop("id", None)
    kept["meta"] = client_meta(resource.get("meta"))  # in its place, or last, as `kept | {"meta": …}` put it
    return Prepared(resource_type, kept, findings)


def condition(resource_type: str, criteria: str, what: str) -> Condition:
    parsed = _parsed(resource_type, criteria)
    if parsed is None:
        raise BadRequest(f"{what} has no search criteria.", [Issue(what, "expected e.g. identifier=system|value")])
    query, key = parsed
    return Condition(_own(query), criteria, key)  # its own: a caller may page it


def _own(query: Query) -> Query:
    """A shallow copy of `query`, as copy.copy makes it, without its reduce protocol (~10 K instructions each; a
    record asks for its people's conditions ~6 times)."""
    made = object.__new__(Query)
    made.__dict__.update(query.__dict__)
    return made


@lru_cache(maxsize=256)
def _parsed(resource_type: str, criteria: str) -> tuple[Query, str] | None:
    """condition's search and key, parsed once for the same criteria: a record's people are asked for by keep_current
    and by its export's draft, and the same people by many records (~25 µs each). None: no criteria; what parse
    refuses is not kept, and raised each time."""
    items = parse_qsl(criteria.split("?", 1)[-1], keep_blank_values=True)
    if not items:
        return None
    query = parse(resource_type, items)
    query.count, query.total = 2, False
    return query, urlencode(sorted(items))[:1000]


def client_meta(meta: Any) -> dict[str, Any]:
    """What a client may say in meta: not the server's versionId or lastUpdated."""
    if not isinstance(meta, dict):
        return {}
    return {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}


def _as_warning(finding: Finding) -> dict[str, Any]:
    return {"severity": finding.severity, "field": finding.expression, "message": finding.message}
