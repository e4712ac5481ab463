"""Intake of clinic records: schema, clinical rules, canonical form, idempotent storage."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from service.domain import loading, rules
from service.domain.kinds import KINDS, Kind, as_utc_naive, schema_of
from service.domain.schemas import dumped, flatten_errors
from service.errors import Conflict, Contention, Issue, NotFound, PreconditionFailed, Unprocessable
from service.store.records import ListQuery, NewRecord, RecordStore, StaleVersion, Stamp, StoredRecord, Within


@dataclass(frozen=True)
class Checked:
    """A record that passed the schema and every error-level rule, with its warnings."""

    kind: Kind
    new: NewRecord
    mapped: Any = None   # what map_check returned: the record's FHIR form

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return self.new.warnings


@dataclass(frozen=True)
class Seen:
    """The other records a check read (its rules' lookups, by kind, source and external_id) and what it found: its
    result holds while they are unchanged (Intake.holds)."""

    lookups: tuple[tuple[tuple[str, str, str], Stamp], ...]


@dataclass(frozen=True)
class Outcome:
    record: StoredRecord
    created: bool


def content_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


#: Maps a checked record's content, with its findings, to FHIR and raises Unprocessable when the result breaks a
#: profile.
MapCheck = Callable[[str, dict[str, Any], list[dict[str, Any]]], Any]
#: (issuer, client id) of the API client a record is written for; None from the command line
Author = tuple[str, str]
#: Stores a record's FHIR form (map_check's result) in the record write's own transaction, for its author.
Export = Callable[[Session, Any, StoredRecord, Author | None], None]
#: Works out before a new record's transaction what of its export can be (that transaction's writers wait for it):
#: given map_check's result, what Export is then given in its stead.
Draft = Callable[[Any, NewRecord], Any]


class Intake:
    def __init__(self, store: RecordStore | None, map_check: MapCheck | None = None,
                 export: Export | None = None, draft: Draft | None = None) -> None:
        """`store` None: check records without one (a preview); rules that compare with other records are skipped.

        `map_check`: run on every record that passed its schema and rules, so a record whose FHIR form
        would break our profiles is refused before it is stored (the mapping engine in production).
        `export`: run with map_check's result in the transaction that stores the record (service/app/flows.py);
        of a new record, with what `draft` made of it just before.
        An intake without them stores records read from FHIR resources, which are validated as FHIR already.
        """
        self._store = store
        self.map_check = map_check
        self.export = export
        self.draft = draft
        self.context = rules.RuleContext(lookup=self._lookup, course=self._course)

    def bound(self, outer: Session) -> Intake:
        """This intake storing inside the caller's transaction (see RecordStore.bound)."""
        return Intake(self.store.bound(outer), self.map_check, self.export, self.draft)

    def reading(self, connection: Connection) -> Intake:
        """This intake checking, its rules' lookups in the read transaction open on `connection` (RecordStore.reading);
        for checks only (check_ahead)."""
        return Intake(self.store.reading(connection), self.map_check, self.export, self.draft)

    @property
    def store(self) -> RecordStore:
        if self._store is None:
            raise RuntimeError("this Intake checks records only; it has no store")
        return self._store

    def check(self, kind_name: str, payload: Any) -> Checked:
        """Validate `payload`; raise Unprocessable with every error found, or return it checked."""
        return self._check(kind_name, payload, self.context)

    def check_ahead(self, kind_name: str, payload: Any) -> tuple[Checked, Seen | None]:
        """check(), before the transaction that stores the record (whose writers wait for it), with what its rules
        read of other records: the result holds in that transaction while `holds(seen)`. Seen None: it read what
        holds() cannot tell unchanged (a course of sessions): check it again there."""
        lookups: list[tuple[tuple[str, str, str], Stamp]] = []
        whole = [True]

        def lookup(kind: str, source: str, external_id: str) -> dict[str, Any] | None:
            record = self._store.find(kind, source, external_id) if self._store is not None else None
            lookups.append(((kind, source, external_id), _stamp(record)))
            return record.content if record is not None else None

        def course(source: str, plan_external_id: str, patient: dict[str, Any], around: datetime) -> list[
                dict[str, Any]]:
            whole[0] = False  # the result is not used: not worth reading
            return []

        checked = self._check(kind_name, payload, rules.RuleContext(lookup=lookup, course=course))
        return checked, Seen(tuple(lookups)) if whole[0] and self._store is not None else None

    def holds(self, seen: Seen) -> bool:
        """Whether the records a check_ahead read are as it found them (in this intake's store: the transaction's)."""
        return all(self.store.stamp(*key) == stamp for key, stamp in seen.lookups)

    def _check(self, kind_name: str, payload: Any, context: rules.RuleContext) -> Checked:
        kind = KINDS[kind_name]
        schema = schema_of(kind.name)
        if not isinstance(payload, dict):
            raise Unprocessable("The record must be a JSON object.", [Issue("$", "Expected a JSON object.")])
        try:
            loaded = loading.loaded(schema, payload)
        except ValidationError as exc:
            issues = [Issue(path, msg) for path, msg in flatten_errors(exc.messages)]
            raise Unprocessable(f"The {kind.name} record is not valid.", issues) from None
        found = rules.check(kind.name, loaded, context)
        errors = [i for i in found if i.severity == "error"]
        if errors:
            raise Unprocessable(f"The {kind.name} record breaks clinical rules.", errors)
        content = dumped(schema, loaded)
        warnings = [i.as_dict() for i in found]
        mapped = self.map_check(kind.name, content, warnings) if self.map_check is not None else None
        patient = loaded["patient"]["identifier"]
        new = NewRecord(kind=kind.name, source=loaded["source"], external_id=loaded["external_id"],
                        patient_system=patient["system"], patient_value=patient["value"],
                        clinical_at=as_utc_naive(kind.clinical_at(loaded)), content=content,
                        content_hash=content_hash(content), warnings=warnings)
        return Checked(kind, new, mapped)

    def _within(self, checked: Checked, author: Author | None, new: bool = False) -> Within | None:
        """The export of the record's FHIR form into the same transaction, when there is one to do; of a `new`
        record, drafted first."""
        if self.export is None or checked.mapped is None:
            return None
        run, mapped = self.export, checked.mapped
        if new and self.draft is not None:
            mapped = self.draft(mapped, checked.new)
        return lambda session, record: run(session, mapped, record, author)

    def submit(self, kind_name: str, payload: Any, author: Author | None = None,
               checked: Checked | None = None) -> Outcome:
        """Store a new record; the same record sent again returns the stored one (created=False).

        `author`: the API client it comes from, named in the Provenance of its FHIR resources. `checked`: what
        check() gives for `payload` now (a check_ahead that holds), else it is checked here."""
        checked = checked or self.check(kind_name, payload)
        for attempt in range(3):
            try:
                # drafted again each time: a draft that does not hold (a concurrent record's new Patient) costs more
                record, created = self.store.create(checked.new, self._within(checked, author, new=True))
                break
            except Contention:  # a concurrent record made the same new Patient: it is there now
                if attempt == 2:
                    raise
        if not created and record.content_hash != checked.new.content_hash:
            raise Conflict(
                f"A {kind_name} with external_id {record.external_id!r} from source {record.source!r} "
                f"already exists with different content; send a PUT to record {record.id} to change it.",
                existing_id=record.id)
        return Outcome(record, created)

    def replace(self, kind_name: str, record_id: str, expected_version: int, payload: Any,
                author: Author | None = None) -> Outcome:
        """Store `payload` as the next version of a record, if nobody changed it since `expected_version`."""
        current = self.get(kind_name, record_id)
        checked = self.check(kind_name, payload)
        if (checked.new.source, checked.new.external_id) != (current.source, current.external_id):
            raise Conflict("external_id and source identify a record and cannot change; "
                           f"record {record_id} is {current.external_id!r} from {current.source!r}.",
                           existing_id=record_id)
        if current.version != expected_version:
            raise stale(current, expected_version)
        if current.content_hash == checked.new.content_hash:
            return Outcome(current, False)
        for attempt in range(3):
            try:
                return Outcome(self.store.update(record_id, expected_version, checked.new,
                                                 self._within(checked, author)), False)
            except StaleVersion as exc:
                raise stale(exc.current, expected_version) from None
            except Contention:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # noqa: S101 - the loop returns or raises

    def get(self, kind_name: str, record_id: str) -> StoredRecord:
        record = self.store.get(kind_name, record_id)
        if record is None:
            raise NotFound(f"No {kind_name} record with id {record_id!r}.")
        return record

    def _lookup(self, kind: str, source: str, external_id: str) -> dict[str, Any] | None:
        if self._store is None:
            return None
        record = self._store.find(kind, source, external_id)
        return record.content if record else None

    def _course(self, source: str, plan_external_id: str, patient: dict[str, Any], around: datetime) -> list[
            dict[str, Any]]:
        """The plan's stored sessions of the patient within a week either side of `around` (none without a store)."""
        if self._store is None:
            return []
        ident = patient["identifier"]
        query = ListQuery(kind="administration", patient_system=ident["system"], patient_value=ident["value"],
                          date_from=as_utc_naive(around - COURSE_WINDOW), date_to=as_utc_naive(around + COURSE_WINDOW),
                          limit=1000)
        return [r.content for r in self._store.list(query)
                if r.source == source and r.content.get("plan_external_id") == plan_external_id]


def _stamp(record: StoredRecord | None) -> Stamp:
    return (record.id, record.version, record.content_hash) if record is not None else None


#: How far either side of a session its course's other sessions are looked for (a week of the course, and a day
#: for the sessions' own UTC offsets).
COURSE_WINDOW = timedelta(days=8)


def stale(current: StoredRecord, expected: int) -> PreconditionFailed:
    return PreconditionFailed(f"Record {current.id} is at version {current.version}, not {expected}; "
                              "read it again and resend your change.", current_version=current.version)
