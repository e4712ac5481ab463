"""People kept current: a record's patient and practitioners update the stored person, field by field.

A person (Patient, Practitioner) is found by identifier. Each of its fields (name parts, birth date, sex; a
practitioner's name) holds the value of the *newest record that gives that field*, newest by the record's
clinical time (`KINDS[...].clinical_at`: a session's start, an event's onset, a score's time, a plan's period
start), ties and undated plans ordered by (kind, source, external_id), undated records below every dated one.
Not arrival order: clinics resend backlogs and the outbox retries, so an old record arriving late must not undo
a newer name, and the result must not depend on which process stored what first. So the outcome is the same
whatever order the records arrive in. A record that lacks a field never blanks it, and a record replaced by a
version without a field leaves the value its older version gave.

A pull (service/app/pull.py) brings the changes an EHR made to a person we hold under the same rule
(`from_ehr`): the EHR's change ranks as a record dated at its `meta.lastUpdated` there (the EHR's registration
is a statement about the person at that time, as a session is), so it wins over every record dated before and
loses to a clinic record dated after; a value one of our own versions held is our own push coming back, not a
change (else an older push, dated at the EHR after a newer record, would undo it). The pull's version names the
EHR's version in `meta.source`; afterwards that value ranks at the time of the pull (our version's time; the
EHR's own time is not kept), so a record dated before it that arrives later does not undo it.

The mapped Bundle's person entry then carries the person as now known: a conditional create when the person is
new, a conditional update (`PUT Patient?identifier=system|value`, R4 http.html#cond-update) when this record
changes it (our store keeps a new version). The outbox worker does not send these requests as written: it
sends each job's people as held at send time, merged into the EHR's own resource by a version-aware update, so
that what only the EHR holds (an address, a phone) stays there (service/exchange/people.py).
"""
from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from service.domain.kinds import as_utc_naive
from service.facade.bundles import replaced
from service.facade.interactions import Condition, condition, match_in
from service.mapping import Mapper, default_mapper
from service.mapping.paths import clone
from service.mapping.spec import Role, lookup, put
from service.store.identified import held_once
from service.store.models import RecordRow, ResourceVersionRow
from service.store.records import StoredRecord
from service.store.resources import ResourceStore, Unit

Rank = tuple[int, datetime, str, str, str]
#: resource elements a person keeps from what others wrote (a client's telecom, another identifier)
SERVER_ELEMENTS = ("id", "meta")


def keep_current(unit: Unit, mapper: Mapper, kind: str, record: StoredRecord,
                 bundle: dict[str, Any], drafting: bool = False) -> dict[str, Any] | None:
    """The record's Bundle with each person entry carrying the current person, written as described above.
    `drafting`: worked out before the record is stored (its pk unknown), from the people alone: None when the
    answer depends on other records too (a field the record and the person hold differently)."""
    spec = mapper.specs[kind]
    people = [r for r in spec.roles if r.person and isinstance(lookup(record.content, r.scope or ""), dict)]
    if not people:
        return bundle
    entries = {e.get("fullUrl"): e for e in bundle["entry"]}
    merged_record = dict(record.content)
    stored: dict[str, tuple[Role, dict[str, Any]]] = {}
    newer = _Newer(unit.session, mapper, record)
    changed = False
    found_by: list[tuple[Role, dict[str, Any], dict[str, Any], Condition]] = []
    for role in people:
        mine = lookup(record.content, role.scope or "")
        entry = next((e for e in entries.values() if e["request"].get("ifNoneExist")
                      and e["resource"]["resourceType"] == role.type
                      and _identifier_of(e) == (mine["identifier"]["system"], mine["identifier"]["value"])), None)
        if entry is not None:
            found_by.append((role, mine, entry, condition(role.type, entry["request"]["ifNoneExist"],
                                                          f"the {role.role}")))
    # the people and the rows the export then reads first, asked together (one statement on PostgreSQL)
    unit.look_up(lambda: replaced(bundle), {(when.query.resource_type, when.criteria): when.query
                                    for *_, when in found_by})
    for role, mine, entry, when in found_by:
        if entry["fullUrl"] in stored:
            continue
        found = match_in(unit, when)
        if found is None or found.deleted or found.content is None:
            continue  # a new person: the entry creates it as the record gives it
        known = _read(mapper, role, found.content)
        merged = clone(mine)  # `put` writes into nested fields: the record's own must stay as sent
        for rule in role.rules:
            if rule.field is None or rule.field.startswith("identifier."):
                continue
            ours, theirs = lookup(mine, rule.field), lookup(known, rule.field)
            if drafting and theirs is not None and ours is not None and ours != theirs:
                return None
            if theirs is not None and (ours is None or (ours != theirs and (
                    newer.gives(role, mine, rule.field) or _pulled_after(unit.session, mapper, role, found,
                                                                         rule.field, theirs, newer.record_at())))):
                put(merged, rule.field, theirs)
        put(merged_record, role.scope or "", merged)
        stored[entry["fullUrl"]] = (role, found.content)
        changed = changed or merged != mine
    if not stored:
        return bundle
    # the record as the store now knows its people, mapped again only when that differs from the record: else
    # its people's entries are the mapped Bundle's own (the mapping runs on the same content)
    remapped = {e["fullUrl"]: e["resource"] for e in (mapper.to_bundle(kind, merged_record) if changed else bundle)[
        "entry"]}
    out = []
    for entry in bundle["entry"]:
        if entry.get("fullUrl") in stored:
            entry = _current(entry, remapped[entry["fullUrl"]], stored[entry["fullUrl"]][1])
        out.append(entry)
    return {**bundle, "entry": out}


def current_patient(engine: Engine, system: str, value: str) -> dict[str, Any] | None:
    """The patient as the store holds it now, in a record's shape (what the console shows); None if not held."""
    return current_person(engine, "Patient", system, value)


def current_person(engine: Engine, resource_type: str, system: str, value: str) -> dict[str, Any] | None:
    """A Patient or Practitioner as the store holds it now, in a record's shape; None if not held (or twice)."""
    return current_persons(engine, resource_type, [(system, value)]).get((system, value))


def current_persons(engine: Engine, resource_type: str, identifiers: list[tuple[str, str]],
                    ) -> dict[tuple[str, str], dict[str, Any]]:
    """Many people as the store holds them now, in a record's shape, by (system, value), in one search
    (store/identified.held_once); an identifier held by none or by two is left out."""
    mapper = default_mapper()
    role = next(r for s in mapper.specs.values() for r in s.roles if r.person and r.type == resource_type)
    with ResourceStore(engine).unit() as unit:
        held = held_once(unit, resource_type, identifiers)
    return {key: _read(mapper, role, person) for key, person in held.items()}


def _current(entry: dict[str, Any], mapped: dict[str, Any], held: dict[str, Any]) -> dict[str, Any]:
    """The person entry: what the store holds with the mapped elements as now known; a conditional update
    when that changes what is held, else the conditional create (which finds it and leaves it)."""
    kept = {k: v for k, v in held.items() if k not in SERVER_ELEMENTS}
    resource = {**kept, **{k: v for k, v in mapped.items() if k != "identifier"}}
    if _content(resource) == _content(held):
        return {**entry, "resource": resource}
    request = {"method": "PUT", "url": f"{mapped['resourceType']}?{entry['request']['ifNoneExist']}"}
    return {"fullUrl": entry["fullUrl"], "resource": resource, "request": request}


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in SERVER_ELEMENTS}


def _identifier_of(entry: dict[str, Any]) -> tuple[str, str] | None:
    for ident in entry["resource"].get("identifier") or []:
        return ident.get("system"), ident.get("value")
    return None


def _read(mapper: Mapper, role: Role, resource: dict[str, Any]) -> dict[str, Any]:
    """The person fields a stored resource holds, read by the role's rules run backwards."""
    links = mapper.reverse_links({"resourceType": "Bundle", "type": "collection", "entry": []})
    values: dict[str, Any] = {}
    for rule in role.rules:
        if rule.reversible and rule.field is not None:
            value = mapper.read_value(rule, mapper.found(role, rule, resource), links)
            if value is not None:
                put(values, rule.field, value)
    return values


def from_ehr(session: Session, held: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any] | None:
    """Our person (`held`, as stored) with the changes an EHR made to it (`theirs`, as pulled), or None when it
    made none that win. A value the EHR holds is its change when it differs from ours and was never ours (a
    value one of our versions held is our own push coming back, perhaps older than ours now); it ranks at the
    EHR's `meta.lastUpdated`, as a record of that time: it wins unless a record dated later gives the field
    (the clinic saw the patient after the EHR's change). Undated, it only fills what we lack. It never blanks."""
    mapper = default_mapper()
    role = next(r for s in mapper.specs.values() for r in s.roles if r.person and r.type == held["resourceType"])
    ours, known = _read(mapper, role, held), _read(mapper, role, theirs)
    past = [_read(mapper, role, c) for c in session.scalars(select(ResourceVersionRow.content).where(
        ResourceVersionRow.resource_type == held["resourceType"], ResourceVersionRow.id == held["id"])) if c]
    at = _instant((theirs.get("meta") or {}).get("lastUpdated"))
    newer, updated = _Newer(session, mapper, None, at), copy.deepcopy(held)
    for rule in role.rules:
        field = rule.field
        if not rule.reversible or field is None or field.startswith("identifier.") or "[" in rule.to:
            continue
        value, mine = lookup(known, field), lookup(ours, field)
        if value is None or value == mine or any(lookup(p, field) == value for p in past):
            continue
        if mine is not None and (at is None or newer.gives(role, ours, field)):
            continue
        _set(updated, rule.to.split("."), value)
    return updated if updated != held else None


def _pulled_after(session: Session, mapper: Mapper, role: Role, found: Any, field: str, value: Any,
                  at: datetime | None) -> bool:
    """Whether the person's `value` of `field` was set by a pull (the version names the EHR's version it came from
    in `meta.source`) later than `at`, a record's clinical time: the EHR's change, kept at the time it reached us,
    outranks that record. The versions are read newest first back to where the value was set."""
    rows = session.execute(select(ResourceVersionRow.content, ResourceVersionRow.last_updated).where(
        ResourceVersionRow.resource_type == found.resource_type, ResourceVersionRow.id == found.id)
        .order_by(ResourceVersionRow.version.desc()))
    setter: tuple[dict[str, Any], datetime] | None = None
    for content, written in rows:
        if content is None or lookup(_read(mapper, role, content), field) != value:
            break
        setter = (content, written)
    if setter is None or not ((setter[0].get("meta") or {}).get("source")):
        return False
    return at is None or setter[1] > at


def _set(resource: dict[str, Any], path: list[str], value: Any) -> None:
    """Set a dotted element path (`name.family`): the first item of a list on the way, made when absent."""
    *parents, last = path
    here = resource
    for part in parents:
        found = here.get(part)
        if isinstance(found, list) and found and isinstance(found[0], dict):
            here = found[0]
        elif isinstance(found, dict):
            here = found
        else:
            here[part] = [{}]
            here = here[part][0]
    here[last] = value


def _instant(text: Any) -> datetime | None:
    try:
        return as_utc_naive(datetime.fromisoformat(str(text).replace("Z", "+00:00"))) if text else None
    except ValueError:
        return None


def rank(kind: str, source: str, external_id: str, clinical_at: datetime | None) -> Rank:
    """A record's place in time: dated records by clinical time, undated ones below them; ties by identity."""
    return (0, datetime.min, kind, source, external_id) if clinical_at is None else (
        1, clinical_at, kind, source, external_id)


class _Newer:
    """Which person fields records newer than this one give (asked only when a value differs, so rarely); with
    no record, newer than the instant `at` (an EHR's change, which wins a tie: "~" sorts after every kind)."""

    def __init__(self, session: Session, mapper: Mapper, record: StoredRecord | None,
                 at: datetime | None = None) -> None:
        self.session, self.mapper, self.record = session, mapper, record
        self._rank: Rank | None = None if record is not None else rank("~", "", "", at)
        self._at: datetime | None = at

    def record_at(self) -> datetime | None:
        """The record's clinical time (the instant given, without a record)."""
        if self._rank is None and self.record is not None:
            self._at = self.session.scalar(select(RecordRow.clinical_at).where(RecordRow.id == self.record.id))
            self._rank = rank(self.record.kind, self.record.source, self.record.external_id, self._at)
        return self._at

    def gives(self, role: Role, person: dict[str, Any], field: str) -> bool:
        ident = (person["identifier"]["system"], person["identifier"]["value"])
        self.record_at()
        assert self._rank is not None  # noqa: S101 - set by record_at, for mypy
        stmt = select(RecordRow.kind, RecordRow.source, RecordRow.external_id, RecordRow.clinical_at,
                      RecordRow.content)
        if self.record is not None:
            stmt = stmt.where(RecordRow.id != self.record.id)
        if role.type == "Patient":
            stmt = stmt.where(RecordRow.patient_system == ident[0], RecordRow.patient_value == ident[1])
        else:
            kinds = [k for k, s in self.mapper.specs.items() if any(r.person and r.type == role.type for r in s.roles)]
            stmt = stmt.where(RecordRow.kind.in_(kinds))
        if self._at is not None:  # only records at or after this one can outrank it
            stmt = stmt.where(RecordRow.clinical_at >= self._at)
        for kind, source, external_id, at, content in self.session.execute(stmt):
            if rank(kind, source, external_id, at) <= self._rank:
                continue
            for other in self.mapper.specs[kind].roles:
                theirs = lookup(content, other.scope or "") if other.person and other.type == role.type else None
                if isinstance(theirs, dict) and (theirs.get("identifier") or {}).get("system") == ident[0] \
                        and theirs["identifier"].get("value") == ident[1] and lookup(theirs, field) is not None:
                    return True
        return False
