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
        return _value(f"{_quoted(self.source)}/{_quoted(self.external_id)}", self.role, self.item)

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


class RecordKeys:
    """The business identifiers of one record's resources (RecordKey.identifier of each role and item), its source
    and external_id encoded once for the ~10 resources a record makes."""

    def __init__(self, kind: str, source: str, external_id: str) -> None:
        self.system = RECORD_SYSTEM + kind
        self.head = f"{_quoted(source)}/{_quoted(external_id)}"

    def identifier(self, role: str | None = None, item: int | None = None) -> dict[str, str]:
        return {"system": self.system, "value": _value(self.head, role, item)}


def _value(head: str, role: str | None, item: int | None) -> str:
    """A key's identifier value: `source/external_id`, then `#role` or `#role/item` for the resources besides the
    main one."""
    if role is None:
        return head
    return f"{head}#{role}" if item is None else f"{head}#{role}/{item}"


def stable_id(system: str, value: str) -> str:
    """str(uuid.uuid5(uuid.NAMESPACE_URL, f"{system}|{value}")), without its UUID object (~11 a record mapped): the
    SHA-1's first 32 hex digits, the version digit 5 and the variant's two bits set in the text."""
    text = sha1(_NAMESPACE + f"{system}|{value}".encode()).hexdigest()  # noqa: S324 - as uuid5
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{_VARIANT[text[16]]}{text[17:20]}-{text[20:32]}"


_NAMESPACE = uuid.NAMESPACE_URL.bytes
#: a hex digit with its top two bits made 10 (RFC 4122's variant: byte 8 & 0x3F | 0x80, of its first digit)
_VARIANT = {f"{n:x}": f"{n & 0x3 | 0x8:x}" for n in range(16)}


@lru_cache(maxsize=1024)
def _quoted(text: str) -> str:
    """A record's source and external_id, percent-encoded: once for the ~10 resources a record makes."""
    return quote(text, safe="")
