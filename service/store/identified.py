"""Resources by business identifier: which live resource holds each (system, value), in one search for them all."""
from __future__ import annotations

from typing import Any

from service.search.parameters import system_value
from service.search.query import MAX_COUNT, parse
from service.store.resources import Unit

#: an identifier as (system, value)
Key = tuple[str, str]


def held_once(unit: Unit, resource_type: str, identifiers: list[Key]) -> dict[Key, dict[str, Any]]:
    """The live (current, not deleted) `resource_type` holding each identifier, by (system, value); an identifier
    held by none, or by two, is left out (which one is meant cannot be told). One search for all of them, the
    token values joined by `,` (R4 search.html#combining), paged through."""
    wanted = set(identifiers)
    if not wanted:
        return {}
    query = parse(resource_type, [("identifier", ",".join(system_value(s, v) for s, v in sorted(wanted)))])
    query.total, query.count = False, MAX_COUNT
    held: dict[Key, list[dict[str, Any]]] = {}
    while True:
        page, _ = unit.search(query)
        for content in (f.content for f in page if f.content is not None and not f.deleted):
            for key in {(i.get("system"), i.get("value")) for i in content.get("identifier") or []} & wanted:
                held.setdefault(key, []).append(content)
        if len(page) < query.count:
            return {key: found[0] for key, found in held.items() if len(found) == 1}
        query.offset += query.count
