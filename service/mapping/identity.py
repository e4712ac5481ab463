"""Deterministic identity: the same record always yields the same business identifiers and ids.

Every resource made from a record carries a business identifier under our canonical base —
system `…/record/{kind}`, value `{source}/{external_id}` (both percent-encoded, so `/` and `#`
always split) plus `#{role}` or `#{role}/{item}` for the resources besides the main
one — and its id is the UUIDv5 of that identifier. Patients and practitioners are the clinic's
own people: their id is the UUIDv5 of their own identifier, and a transaction creates them only
if no resource with that identifier exists yet.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import lru_cache
from hashlib import sha1
from urllib.parse import quote, unquote

RECORD_SYSTEM = "https://ketamine-fhir.org/fhir/record/"


@dataclass(frozen=True)
class RecordKey:
    kind: str
    source: str
    external_id: str
    role: str | None = None      # None: the record's main resource
    item: int | None = None      # the list item a per-item resource comes from

    @property
    def system(self) -> str:
        return RECORD_SYSTEM + self.kind

    @property
    def value(self) -> str:
        value = f"{_quoted(self.source)}/{_quoted(self.external_id)}"
        if self.role is not None:
            value += f"#{self.role}" + (f"/{self.item}" if self.item is not None else "")
        return value

    def identifier(self) -> dict[str, str]:
        return {"system": self.system, "value": self.value}

    @property
    def id(self) -> str:
        return stable_id(self.system, self.value)

    @classmethod
    def parse(cls, system: str | None, value: str | None) -> RecordKey | None:
        """The key behind one of our business identifiers; None for anyone else's identifier."""
        if not system or not value or not system.startswith(RECORD_SYSTEM) or "/" not in value:
            return None
        kind = system[len(RECORD_SYSTEM):]
        head, _, fragment = value.partition("#")
        source, _, external_id = head.partition("/")
        role, item = None, None
        if fragment:
            role, _, index = fragment.partition("/")
            item = int(index) if index.isdigit() else None
        return cls(kind, unquote(source), unquote(external_id), role, item)


def stable_id(system: str, value: str) -> str:
    """str(uuid.uuid5(uuid.NAMESPACE_URL, f"{system}|{value}")), without its UUID object (~11 a record mapped)."""
    digest = bytearray(sha1(_NAMESPACE + f"{system}|{value}".encode()).digest()[:16])  # noqa: S324 - as uuid5
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_NAMESPACE = uuid.NAMESPACE_URL.bytes


@lru_cache(maxsize=1024)
def _quoted(text: str) -> str:
    """A record's source and external_id, percent-encoded: once for the ~10 resources a record makes."""
    return quote(text, safe="")
