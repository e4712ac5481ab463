"""What the resource store gives back: a stored version of a resource (StoredResource) or its stored JSON text
(StoredText), and how a version's id and meta are set (versioned, instant). Plain values, no database."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.store.models import ResourceRow, ResourceVersionRow


@dataclass(frozen=True)
class StoredResource:
    pk: int
    resource_type: str
    id: str
    version: int
    deleted: bool
    last_updated: datetime
    content: dict[str, Any] | None
    warnings: list[dict[str, Any]]
    record_id: str | None = None
    #: the interaction that wrote this version (POST, PUT, DELETE): known for a version read from the history and
    #: for one written in this transaction; None for a current row read back
    method: str | None = None
    #: its content's JSON text as stored (serialise's), where the write that made it had it already (Unit.write of a
    #: drafted resource); None otherwise. Not compared: the same version, the same content.
    text: str | None = field(default=None, compare=False, repr=False)

    def with_pk(self, pk: int) -> StoredResource:
        """This version under the key its row was given (dataclasses.replace cost ~5 µs more, in the write unit)."""
        return StoredResource(pk, self.resource_type, self.id, self.version, self.deleted, self.last_updated,
                              self.content, self.warnings, self.record_id, self.method, self.text)

    @classmethod
    def of(cls, row: ResourceRow) -> StoredResource:
        return cls(row.pk, row.resource_type, row.id, row.version, row.deleted, row.last_updated, row.content,
                   row.warnings, row.record_id)

    @classmethod
    def of_columns(cls, row: Any) -> StoredResource:
        """From a Core row of fhir_resources."""
        return cls(row.pk, row.resource_type, row.id, row.version, row.deleted, row.last_updated, row.content,
                   row.warnings, row.record_id)

    @classmethod
    def of_version(cls, row: ResourceVersionRow) -> StoredResource:
        return cls(row.resource_pk, row.resource_type, row.id, row.version, row.deleted, row.last_updated,
                   row.content, [], None, row.method)


@dataclass(frozen=True)
class StoredText:
    """A current resource as its stored JSON text (json.dumps of its content, as the JSON column writes it)."""

    resource_type: str
    id: str
    text: str
    #: its subject.reference and patient.reference, read by the database beside the text: what an answer's audit
    #: event names the patients by, without parsing the text (None where absent or not a string)
    subject: str | None = None
    patient: str | None = None


def instant(moment: datetime) -> str:
    """`meta.lastUpdated`: a FHIR instant in UTC with milliseconds."""
    return moment.isoformat(timespec="milliseconds") + "Z"


def versioned(content: dict[str, Any], resource_id: str, version: int, now: datetime) -> dict[str, Any]:
    """`content` as Unit.write stores it as `version` of `resource_id` written at `now`: its id, meta.versionId and
    meta.lastUpdated set, and resourceType, id and meta first."""
    meta = {**(content.get("meta") or {}), "versionId": str(version), "lastUpdated": instant(now)}
    # the rest copied whole (C), those three set again in their places: a comprehension testing each key cost
    # ~2.5x as much, ~9 times a clinic record inside the writers' turn
    out = {"resourceType": content["resourceType"], "id": resource_id, "meta": meta}
    out.update(content)
    out["id"], out["meta"] = resource_id, meta
    return out


def restamped(content: dict[str, Any], now: datetime) -> dict[str, Any]:
    """`content`, a version as versioned() made it, as written at `now` instead: a copy with its meta.lastUpdated
    set in its place (a create's version is made once before its unit, and stamped with the unit's time in it)."""
    out = content.copy()
    out["meta"] = {**content["meta"], "lastUpdated": instant(now)}
    return out
