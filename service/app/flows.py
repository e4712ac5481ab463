"""The two flows that cross layers, owned here and wired once in `service/app/runtime.py`.

* A clinic record was written (`RecordWritten`, run by the domain intake inside the record's transaction):
  its mapped, already validated Bundle, its people brought up to date (service/app/people.py), is stored as
  FHIR resources through the facade, with a Provenance naming the record and its versions, and queued for
  every enabled EHR endpoint in the database; the safety flags an earlier version raised and this one does
  not go with it as entered-in-error (service/mapping/flags.py). The EHRs hear of a record if and only if it
  is stored: the record, its resources and the outbox jobs commit together.
* A FHIR resource was written (`ResourceWritten`, run by the facade inside the write's transaction): a
  record's main resource (a ketamine-treatment-plan CarePlan, a ketamine-administration
  MedicationAdministration, a ketamine-adverse-event AdverseEvent, a ketamine-outcome-score Observation
  that is not part of a session) is read back into a clinic record by the mapping run in reverse, and
  stored through an intake that neither maps nor exports (the record came from FHIR: nothing to send back,
  and no loop). The resources it refers to are read from the store; the resource keeps the id of its
  record. A resource that cannot become a record stays stored as FHIR; the reason is a note for the
  response and the console. The record's part runs in a savepoint (but for a new record on SQLite: one
  INSERT, which SQLite undoes alone when it fails), so a record that cannot be made undoes only itself while
  the resource, its record and the link between them commit together.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.app.people import keep_current
from service.domain.intake import Checked, Intake, Seen
from service.errors import Conflict, Contention, Forbidden, Issue, RequestError, Unprocessable
from service.exchange.outbox import queue_taking
from service.exchange.registry import Endpoints
from service.facade.bundles import ExportDraft, draft_export
from service.facade.interactions import ClaimLost, Condition, condition, matches_still
from service.facade.server import FhirServer
from service.fhirjson import reference_key, references
from service.mapping import Mapper, MappingError, Reversed, main_profiles
from service.mapping.flags import withdraw_stale
from service.search.query import MAX_COUNT, parse
from service.security.scopes import RECORDS, insufficient
from service.store.batch import serialise, spliced
from service.store.engine import WRITTEN
from service.store.records import NewRecord, StoredRecord, utcnow
from service.store.resources import Author, ResourceStore, Unit
from service.store.stored import StoredResource

#: more readings than a session can have (vital signs every few minutes of a long infusion, scores)
MAX_READINGS = 500


class RecordWritten:
    """Stores a written record's FHIR form and queues it for the EHRs, in the record's own transaction."""

    def __init__(self, fhir: FhirServer, endpoints: Endpoints, mapper: Any) -> None:
        """`mapper`: a Mapper, or a function giving one (the specs load on first use)."""
        self.fhir = fhir
        self.endpoints = endpoints
        self._mapper = mapper

    @property
    def mapper(self) -> Mapper:
        return _loaded(self._mapper)

    def draft(self, mapped: Any, new: NewRecord) -> Drafted:
        """What of a new record's export can be worked out before its transaction, whose writers wait for it (and
        all a process's writers share one, service/store/group.py): its people as now known, its resources as
        written, the outbox's text. From what its transaction reads again: the people it searched for."""
        mapper = self.mapper
        now = utcnow()  # a record not stored yet: keep_current asks for its key only when drafting gives up
        record = StoredRecord(0, "", new.kind, new.source, new.external_id, 1, new.content, new.content_hash,
                              new.warnings, now, now)
        try:
            with self.fhir.store.unit(keyed=True) as unit:  # reads its people by identifier, rows by key
                bundle = keep_current(unit, mapper, mapped.kind, record, mapped.bundle, drafting=True)
                export = draft_export(unit, mapped.bundle if bundle is None else bundle)
                made = {(w.query.resource_type, w.criteria): w for w in (export.conditions if export else {}).values()}
                seen = [(made.get(key) or condition(key[0], key[1], "criteria"), found)
                        for key, found in unit.matched.items()]
        except Exception:  # noqa: BLE001 - e.g. two Patients with this MRN, a lost connection: the transaction
            return Drafted.bare(mapped)  # works it out again and says why
        # the outbox's text, its resources' texts drafted (the export's) spliced in
        payload = None if bundle is None else spliced(bundle, export.texts) if export is not None and \
            export.bundle is bundle else serialise(bundle)
        return Drafted(mapped, bundle, payload, seen, export)

    def __call__(self, session: Session, mapped: Any, record: StoredRecord, author: Author | None) -> None:
        drafted = mapped if isinstance(mapped, Drafted) else Drafted.bare(mapped)
        mapped = drafted.mapped
        try:
            unit = Unit(session, author, record.id, failed=_contended)  # its rows may fail with the COMMIT
            flags = _stored_flags(unit, record)
            if flags:  # a first version has none to withdraw (~0.1 ms inside the writers' turn to find that out)
                withdraw_stale(mapped.bundle, flags)
            # the draft holds if the people it found are those found now (their versions: their content)
            holds = record.version == 1 and matches_still(unit, drafted.seen)
            bundle, payload = (drafted.bundle, drafted.payload) if holds else (None, None)
            if bundle is None:
                bundle = keep_current(unit, self.mapper, mapped.kind, record, mapped.bundle)  # people as now known
                assert bundle is not None  # noqa: S101 - None only when drafting
            self.fhir.export_record(unit, bundle, drafted.export if holds else None)
            # read in the record's transaction: every process queues for the same endpoints (the database's); on
            # PostgreSQL with its COMMIT (nothing after this reads the jobs). A first version is the record created in
            # this transaction (RecordStore.create; a change is version 2 on): no older job of it to supersede.
            queue_taking(session, record, bundle, lambda: self.endpoints.taking(session, record.kind), payload,
                         at_commit=True, created=record.version == 1)
        except (IntegrityError, ClaimLost, Contention):  # a concurrent record created the same new Patient first
            raise _contention() from None
        except RequestError as exc:  # e.g. the EHR holds two Patients with this MRN
            raise Unprocessable(f"The record's FHIR resources cannot be stored: {exc.detail}",
                                exc.issues or [Issue("$", exc.detail)]) from None


def _contention() -> Contention:
    """A concurrent record created the same new Patient first: the same record sent again passes (Intake.submit
    sends it again)."""
    return Contention("Another record created the same patient or practitioner at the same moment; "
                      "send this record again.")


def _contended(exc: BaseException) -> BaseException:
    """What a failure of a record's resources' rows raises where they are sent with the COMMIT (Unit, `failed`)."""
    return _contention() if isinstance(exc, IntegrityError) else exc


@dataclass(frozen=True)
class Drafted:
    """A new record's mapped Bundle (`mapped`) with what RecordWritten.draft worked out of its export before the
    record's transaction: keep_current's Bundle (None: it depends on other records, asked in the transaction), its
    serialised text, the conditional searches made and what each found, the export's draft."""

    mapped: Any
    bundle: dict[str, Any] | None
    payload: str | None
    seen: list[tuple[Condition, StoredResource | None]]
    export: ExportDraft | None

    @classmethod
    def bare(cls, mapped: Any) -> Drafted:
        """Nothing drafted: the record's transaction works its export out itself."""
        return cls(mapped, None, None, [], None)


def _stored_flags(unit: Unit, record: StoredRecord) -> list[dict[str, Any]]:
    """The patient's stored DetectedIssues (withdraw_stale keeps those under this record's identifiers): what
    earlier versions of the record raised, the patient being the record's (its MRN, not an id that may differ)."""
    if record.version == 1:
        return []  # a first version has no earlier flags
    mrn = record.content["patient"]["identifier"]
    query = parse("DetectedIssue", [("patient.identifier", f"{mrn['system']}|{mrn['value']}"), ("_sort", "_id")])
    query.total, query.count, found = False, MAX_COUNT, []
    while True:
        page, _ = unit.search(query)
        found += [r.content for r in page if r.content and not r.deleted]
        if len(page) < query.count:
            return found
        query.offset += query.count


@dataclass(frozen=True)
class ReadAhead:
    """A created main resource read back into a clinic record before its write's unit of work (ResourceWritten.ahead):
    the record and its check, and what they read: the resources its references name (`rows`, None for an id not
    held; the write's unit adopts them while unchanged, Unit.adopt), of which the mapping `resolved` some, and the
    records its rules looked up (`seen`). The unit uses the record while all of that is unchanged."""

    key: tuple[str, str]
    reversed: Reversed
    checked: Checked
    rows: dict[tuple[str, str], StoredResource | None]
    resolved: frozenset[tuple[str, str]]
    seen: Seen


class ResourceWritten:
    """Reads a written FHIR resource back into a clinic record, in the write's own transaction."""

    def __init__(self, intake: Intake, mapper: Any) -> None:
        """`intake`: one without map_check or export (what is read from FHIR is validated as FHIR already)."""
        self.intake = intake
        self._mapper = mapper  # a Mapper, or a function giving one (the specs load on first use)

    @property
    def mapper(self) -> Mapper:
        return _loaded(self._mapper)

    def ahead(self, store: ResourceStore, content: dict[str, Any]) -> ReadAhead | None:
        """The read-back of `content`, a resource a POST is about to create as it will be stored (its id made), worked
        out before the write's unit of work, which every other writer waits for (SQLite's writers' turn): the mapping
        and the record's check, on what a read transaction of their own finds (~2 ms of CPU a create out of the
        turn). None where the unit must work it out itself: not a record's main resource (a session's reading is read
        into its session's record, found in the unit), or a record that cannot be made (its note is made there)."""
        if not store.one_writer or not _is_main(content):  # PostgreSQL's writers run at once: it would cost only
            return None
        keys = [k for _, ref in references(content, content["resourceType"], contained=False)
                if (k := reference_key(ref)) is not None]
        rows: dict[tuple[str, str], StoredResource | None] = {}
        try:
            # keyed: rows by key and records by identity, no temporary file: its connection, the one the last write
            # gave back (LIFO), keeps its temp_store, which a plain read switched and the next write switched back;
            # on a Core connection, no ORM Session begun
            with store.read_by_key() as reader:
                reader.prefetch(keys)

                def resolve(reference: str) -> dict[str, Any] | None:
                    key = reference_key(reference)
                    if key is None:
                        return None
                    found = rows[key] = reader.get(*key)
                    return found.content if found and not found.deleted else None

                reversed_ = self.mapper.to_record(_lone(content), resolve=resolve)
                checked, seen = self.intake.reading(reader.connection).check_ahead(reversed_.kind, reversed_.record)
                resolved = frozenset(rows)
                rows |= {key: reader.get(*key) for key in keys}  # read already (prefetch): the unit's reference check's
        except Exception:  # noqa: BLE001 - e.g. a record that cannot be made: the unit works it out and says why
            return None
        if seen is None:
            return None
        return ReadAhead((content["resourceType"], content["id"]), reversed_, checked, rows, resolved, seen)

    def __call__(self, unit: Unit, stored: StoredResource, ahead: ReadAhead | None = None) -> list[str]:
        """`ahead`: what ahead() worked out for this resource, used if all it read is unchanged in `unit`."""
        main = self._main(unit, stored)
        key = f"{main.resource_type}/{main.id}" if main is not None else ""
        if main is None or key in unit.linked:
            return []
        unit.linked.add(key)  # a transaction's readings of one session make its record once
        intake = self.intake.bound(unit.session)
        try:
            if ahead is not None and main is stored and _holds(ahead, unit, intake, stored):
                reversed_, checked = ahead.reversed, ahead.checked
            else:
                reversed_ = self.mapper.to_record(_payload(unit, main),
                                                  resolve=lambda reference: _resolve(unit, reference))
                checked = None
            record = self._store(intake, unit, reversed_.kind, reversed_.record, checked)
        except Forbidden:
            raise  # the write changes a clinic record its client may not change: refused whole
        except (MappingError, RequestError) as exc:
            return [f"Not read into a clinic record: {getattr(exc, 'detail', exc)}"]
        unit.link_record(main.resource_type, main.id, record)
        return list(reversed_.notes)

    @staticmethod
    def _main(unit: Unit, stored: StoredResource) -> StoredResource | None:
        """The record's main resource this write belongs to: itself, or, for a session's vital sign or
        score (an Observation partOf the session), the session's MedicationAdministration, whose record
        is read again with the new reading."""
        content = stored.content or {}
        if stored.resource_type == "Observation" and content.get("partOf"):
            for part_of in content["partOf"]:
                key = reference_key(str((part_of or {}).get("reference", "")))
                if key is not None and key[0] == "MedicationAdministration":
                    session = unit.get(*key)
                    if session is not None and not session.deleted and _is_main(session):
                        return session
            return None
        return stored if _is_main(stored) else None

    @staticmethod
    def _store(intake: Intake, unit: Unit, kind: str, record: dict[str, Any], checked: Checked | None = None) -> str:
        """The record made or changed, in the write's transaction; the client needs the record scope the domain
        API would ask (a reading posted with only `system/Observation.c` once changed a session's record).
        `checked`: the record's check, if it was made before the unit and holds."""
        try:
            made = intake.submit(kind, record, checked=checked).record.id
            _require(unit, "c")  # raised inside the transaction: the record made is rolled back with the rest
            return made
        except Conflict as exc:  # the EHR sent a new version of a record it sent before
            _require(unit, "u")
            current = intake.get(kind, exc.extra["existing_id"])
            return intake.replace(kind, current.id, current.version, record).record.id


def _loaded(mapper: Any) -> Mapper:
    """A Mapper, or what a function giving one gives (the specs load on first use)."""
    return mapper() if callable(mapper) else mapper  # type: ignore[no-any-return]


def _require(unit: Unit, letters: str) -> None:
    if not unit.permits(RECORDS, letters):
        raise insufficient(RECORDS, letters, "A write that changes a clinic record")


def _is_main(stored: StoredResource | dict[str, Any]) -> bool:
    """Whether a stored resource, or a resource's content, is a clinic record's main resource (its profile says)."""
    content = stored if isinstance(stored, dict) else stored.content or {}
    profile = main_profiles().get(str(content.get("resourceType")))
    return profile is not None and profile in ((content.get("meta") or {}).get("profile") or [])


def _holds(ahead: ReadAhead, unit: Unit, intake: Intake, stored: StoredResource) -> bool:
    """Whether the read-back `ahead` worked out is what the unit would work out now: made for this resource, and
    what it read unchanged in the unit's transaction (the resources its references name, read by the write's
    reference check already, and the records its rules looked up); the payload is the resource alone, as _payload
    makes it for a POST whose transaction wrote no reading."""
    if ahead.key != (stored.resource_type, stored.id) or stored.method != "POST" or _wrote_readings(unit):
        return False
    unit.prefetch(list(ahead.resolved))  # adopted (Unit.adopt) while unchanged: no statement then
    return all(unit.get(*key) == ahead.rows[key] for key in ahead.resolved) and intake.holds(ahead.seen)


def _lone(content: dict[str, Any]) -> dict[str, Any]:
    """What a record is read from when its main resource is all there is to read (see _payload)."""
    if content["resourceType"] != "MedicationAdministration":
        return content
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": content}]}


def _payload(unit: Unit, main: StoredResource) -> dict[str, Any]:
    """What the record is read from: the main resource, and for a session the readings that are partOf it
    (they refer to it, not it to them, so resolving references from it would never find them)."""
    content = main.content or {}
    if main.resource_type != "MedicationAdministration":
        return content
    if main.method == "POST" and not _wrote_readings(unit):
        # a POST's id was made by this server in this transaction (interactions.create_in), so only what this
        # transaction wrote can refer to it, and it wrote no reading: nothing to look for
        return _lone(content)
    readings = unit.referring("Observation", "part-of", [f"MedicationAdministration/{main.id}"], MAX_READINGS)
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": content}, *({"resource": r.content} for r in readings if r.content)]}


def _wrote_readings(unit: Unit) -> bool:
    """Whether the unit's transaction wrote an Observation (a reading may be one)."""
    return any(isinstance(item, StoredResource) and item.resource_type == "Observation"
               for item, _ in unit.session.info.get(WRITTEN, ()))


def _resolve(unit: Unit, reference: str) -> dict[str, Any] | None:
    key = reference_key(reference)
    found = unit.get(*key) if key is not None else None
    return found.content if found and not found.deleted else None
