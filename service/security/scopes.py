"""SMART on FHIR system scopes: v2 (`system/Observation.rs`, `system/*.cruds`) and v1 (`system/*.read`).

SMART App Launch 2.0 (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html): the
permissions are c(reate) r(ead) u(pdate) d(elete) s(earch), written in that order; v1's `read` is
`rs`, `write` is `cud`, `*` is all five. Only `system/` scopes grant anything here: `patient/` and
`user/` scopes need a launch context this server does not have, and a scope with a query
(`system/Observation.rs?category=…`) is a narrowing this server cannot enforce, so both grant nothing
rather than more than they say.

Beside FHIR resource types, three names stand for what is not a FHIR resource type here:
`ketamine-records` (the domain API), `ketamine-exchange` (the exchange API). The wildcard `*`
covers the FHIR types served, never those names and never `AuditEvent`: reading the audit trail
is a separate duty that a scope must name (`system/AuditEvent.rs`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from service.errors import Forbidden

LETTERS = "cruds"
#: resource types whose letters a Grant remembers (a URL names the type: a client could name any number)
MAX_REMEMBERED = 256
V1 = {"read": "rs", "write": "cud", "*": LETTERS}
SCOPE = re.compile(r"^system/(?P<type>\*|[A-Za-z][A-Za-z0-9-]{0,63})\.(?P<perm>\*|read|write|c?r?u?d?s?)$")
#: names the wildcard does not reach
NAMED_ONLY = frozenset({"AuditEvent", "ketamine-records", "ketamine-exchange"})
RECORDS, EXCHANGE, AUDIT = "ketamine-records", "ketamine-exchange", "AuditEvent"


def parse(scope: str) -> tuple[str, str] | None:
    """(resource type or '*', permission letters) of one scope; None when it grants nothing here."""
    found = SCOPE.match(scope)
    if found is None or not found["perm"]:
        return None
    perm = found["perm"]
    return found["type"], V1.get(perm, perm)


def well_formed(scope: str) -> bool:
    return parse(scope) is not None


@dataclass(frozen=True)
class Grant:
    """What a set of scopes allows: resource type → permission letters."""

    scopes: tuple[str, ...]

    @classmethod
    def of(cls, scopes: str | list[str] | tuple[str, ...]) -> Grant:
        items = scopes.split() if isinstance(scopes, str) else list(scopes)
        return cls(tuple(dict.fromkeys(s for s in items if s)))

    @cached_property
    def _parsed(self) -> list[tuple[str, str]]:
        """The scopes that grant anything, parsed once (a request asks 2-4 times; a key's Grant lives on)."""
        return [parsed for scope in self.scopes if (parsed := parse(scope)) is not None]

    @cached_property
    def _remembered(self) -> dict[str, frozenset[str]]:
        return {}

    def _letters(self, resource_type: str) -> frozenset[str]:
        found = self._remembered.get(resource_type)
        if found is not None:
            return found
        letters: set[str] = set()
        for kind, perm in self._parsed:
            if kind == resource_type or (kind == "*" and resource_type not in NAMED_ONLY):
                letters.update(perm)
        found = frozenset(letters)
        if len(self._remembered) < MAX_REMEMBERED:
            self._remembered[resource_type] = found
        return found

    def allows(self, resource_type: str, letters: str) -> bool:
        """True when every letter (of c r u d s) is granted on `resource_type`."""
        return set(letters) <= self._letters(resource_type)

    def require(self, resource_type: str, letters: str) -> None:
        """Raise Forbidden naming the v2 scope that would allow this."""
        if not self.allows(resource_type, letters):
            raise insufficient(resource_type, letters, "This interaction")


def insufficient(resource_type: str, letters: str, what: str) -> Forbidden:
    """403 naming the v2 scope that would allow `what`, in the body and in WWW-Authenticate (RFC 6750 §3.1)."""
    needed = f"system/{resource_type}.{''.join(c for c in LETTERS if c in letters)}"
    return Forbidden(f"{what} needs the scope {needed}.",
                     f'Bearer realm="ketamine-fhir", error="insufficient_scope", scope="{needed}"')
