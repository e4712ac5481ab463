"""People at send time: a job's Patient and Practitioner entries carry the person as our store holds them now.

An outbox job is written with its record, and its Bundle carries the person as known then. Jobs of different
records are independent (each business key has its own queue), so a late retry, or PostgreSQL workers
delivering in parallel, could otherwise send an older name after a newer one and leave the EHR with it. So the
worker refreshes each person entry from our store just before it sends (service/app/people.py keeps the stored
person current, newest record first): whatever order the jobs go in, each sends the person as now held.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine

from service.search.parameters import escape
from service.search.query import parse
from service.store.resources import ResourceStore

PEOPLE = ("Patient", "Practitioner")
#: what the store adds to a resource, never sent (the EHR keeps its own id and versions)
SERVER_ELEMENTS = ("id", "meta")


def current_people(engine: Engine, bundle: dict[str, Any]) -> dict[str, Any]:
    """`bundle` with each person entry's resource as the store holds it now. An entry whose person changed
    since the job was written becomes a conditional update (the EHR may hold the older one by now); a person
    the store does not hold (or holds twice) is sent as the job has it."""
    entries = []
    with ResourceStore(engine).unit() as unit:
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") or {}
            token = identifier_token(resource) if resource.get("resourceType") in PEOPLE else None
            held = None
            if token is not None:
                found, _ = unit.search(parse(resource["resourceType"], [("identifier", token)]))
                alive = [f.content for f in found if f.content is not None and not f.deleted]
                held = alive[0] if len(alive) == 1 else None
            entries.append(entry if held is None else _refreshed(entry, held, token or ""))
    return {**bundle, "entry": entries}


def _refreshed(entry: dict[str, Any], held: dict[str, Any], token: str) -> dict[str, Any]:
    now = without_server_elements(held)
    if now == without_server_elements(entry["resource"]):
        return entry
    url = f"{now['resourceType']}?identifier={quote(token, safe='')}"
    return {**entry, "resource": now, "request": {"method": "PUT", "url": url}}


def identifier_token(resource: dict[str, Any]) -> str | None:
    """The first identifier as a search token, `system|value`, each part escaped (R4 search.html#escaping)."""
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
            return f"{escape(identifier['system'])}|{escape(identifier['value'])}"
    return None


def without_server_elements(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in SERVER_ELEMENTS}
