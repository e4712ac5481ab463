"""People at send time: a job's Patient and Practitioner entries carry the person as our store holds them now,
merged into the EHR's own resource rather than replacing it.

Now, not then: an outbox job is written with its record, and its Bundle carries the person as known then. Jobs
of different records are independent (each business key has its own queue), so a late retry, or PostgreSQL
workers delivering in parallel, could otherwise send an older name after a newer one and leave the EHR with it.
So the worker refreshes each person entry from our store just before it sends (service/app/people.py keeps the
stored person current, newest record first): whatever order the jobs go in, each sends the person as now held.

Merged, not replaced: an update replaces the whole resource (R4 http.html#update), so a conditional update
(`PUT Patient?identifier=…`, #cond-update) would drop what only the EHR holds: the address and telecom its
registration took, its own identifiers. So the worker reads the EHR's person first, lays our elements over it
(ours replace theirs element by element; identifiers and names of other uses that only the EHR holds are kept)
and writes it back with a version-aware update, `PUT Patient/[id]` with `If-Match` on the version read
(#concurrency): a client that wrote in between makes it fail (R4 says 412; HAPI FHIR answers 409), and the
worker reads and merges again. Not PATCH: R4 lets a server leave patch out, and in a transaction or batch only
FHIRPath Patch is defined (#patch); version-aware update is the one write every EHR that takes our Patients has.
When the merge changes nothing, or the EHR does not hold the person, the entry is the conditional create it was
(`If-None-Exist`): it finds the person and leaves it, or creates it; two matches there stay a 412 for a person.
"""
from __future__ import annotations

from itertools import islice
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine

from service.exchange.client import FhirClient
from service.fhirjson import etag
from service.search.parameters import system_value
from service.store.identified import held_once
from service.store.resources import ResourceStore

PEOPLE = ("Patient", "Practitioner")
#: what a server adds to a resource's meta (each server its own), never sent
SERVER_META = ("versionId", "lastUpdated", "source")
#: names of these uses are other names the person has or had (R4 name-use): ours never replace them
OTHER_NAMES = ("nickname", "anonymous", "old", "maiden")


def current_people(engine: Engine, bundle: dict[str, Any]) -> dict[str, Any]:
    """`bundle` with each person entry's resource as the store holds it now. An entry whose person changed
    since the job was written becomes a conditional update (the EHR may hold the older one by now); a person
    the store does not hold (or holds twice) is sent as the job has it. One search per resource type."""
    entries = bundle.get("entry") or []
    keys = [person_key(entry.get("resource") or {}) for entry in entries]
    wanted: dict[str, list[tuple[str, str]]] = {}
    for entry, key in zip(entries, keys, strict=True):
        if key is not None:
            wanted.setdefault(entry["resource"]["resourceType"], []).append(key)
    with ResourceStore(engine).unit() as unit:
        held = {(kind, key): person for kind, keys_of in wanted.items()
                for key, person in held_once(unit, kind, keys_of).items()}
    return {**bundle, "entry": [
        entry if key is None or (entry["resource"]["resourceType"], key) not in held else
        _refreshed(entry, held[entry["resource"]["resourceType"], key], _token(key))
        for entry, key in zip(entries, keys, strict=True)]}


def merged_at(client: FhirClient, bundle: dict[str, Any]) -> dict[str, Any]:
    """`bundle` with each person entry written into the EHR's own resource, as described above."""
    entries = []
    for entry in bundle.get("entry") or []:
        token = person_token(entry.get("resource") or {})
        if token is None:
            entries.append(entry)
            continue
        ours = entry["resource"]
        found = list(islice(client.search(ours["resourceType"], {"identifier": token}), 2))
        merged = merge(found[0], ours) if len(found) == 1 else None
        if merged is None or _data(merged) == _data(found[0]):
            entries.append(_conditional_create(entry, token))
            continue
        version = (found[0].get("meta") or {}).get("versionId")
        request = {"method": "PUT", "url": f"{ours['resourceType']}/{found[0]['id']}"}
        if version:
            request["ifMatch"] = etag(version)
        entries.append({"fullUrl": entry.get("fullUrl"), "resource": merged, "request": request})
    return {**bundle, "entry": entries}


def merge(theirs: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The EHR's person with our elements laid over it. Each element we send replaces theirs, but identifiers
    (theirs kept, ours added), names (theirs of other uses kept; our name keeps their prefix and suffix when it
    gives none) and meta (their tags and profiles kept, ours added). Elements we do not send stay as they are;
    their narrative goes when data changes (ours replaces it, or none: a narrative naming the old name would
    mislead a reader, R4 narrative.html)."""
    merged = {k: v for k, v in theirs.items() if k != "text"}
    for key, value in ours.items():
        if key in ("resourceType", "id", "meta", "text"):
            continue
        if key == "identifier":
            merged[key] = _union(theirs.get(key) or [], value, lambda i: (i.get("system"), i.get("value")))
        elif key == "name" and theirs.get("name"):
            merged[key] = _names(theirs["name"], value)
        else:
            merged[key] = value
    if _data(merged) == _data(theirs):
        return theirs
    if ours.get("text"):
        merged["text"] = ours["text"]
    meta = {k: v for k, v in (theirs.get("meta") or {}).items() if k not in SERVER_META}
    for part in ("tag", "profile"):
        mine = (ours.get("meta") or {}).get(part) or []
        if mine:
            meta[part] = _union(meta.get(part) or [], mine, lambda t: (t.get("system"), t.get("code"))
                                if isinstance(t, dict) else t)
    if meta:
        merged["meta"] = meta
    else:
        merged.pop("meta", None)
    return merged


def _names(theirs: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our names in place of theirs that say what the person is called now; theirs of other uses kept."""
    current = [n for n in theirs if n.get("use") not in OTHER_NAMES]
    kept = {k: v for k, v in (current[0] if current else {}).items() if k in ("use", "prefix", "suffix")}
    named = [{**kept, **ours[0]}, *ours[1:]] if ours else []
    return named + [n for n in theirs if n.get("use") in OTHER_NAMES and n not in named]


def _union(theirs: list[Any], ours: list[Any], key: Any) -> list[Any]:
    known = {key(item) for item in theirs}
    return [*theirs, *(item for item in ours if key(item) not in known)]


def _refreshed(entry: dict[str, Any], held: dict[str, Any], token: str) -> dict[str, Any]:
    now = without_server_elements(held)
    if _data(now) == _data(entry["resource"]):
        return entry
    url = f"{now['resourceType']}?identifier={quote(token, safe='')}"
    return {**entry, "resource": now, "request": {"method": "PUT", "url": url}}


def _conditional_create(entry: dict[str, Any], token: str) -> dict[str, Any]:
    request = {"method": "POST", "url": entry["resource"]["resourceType"],
               "ifNoneExist": f"identifier={quote(token, safe='')}"}
    return {**entry, "request": request}


def person_key(resource: dict[str, Any]) -> tuple[str, str] | None:
    """A person's first identifier with a system and a value, as (system, value); None for a resource that is
    not a person with one."""
    if resource.get("resourceType") not in PEOPLE:
        return None
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
            return str(identifier["system"]), str(identifier["value"])
    return None


def person_token(resource: dict[str, Any]) -> str | None:
    """A person's first identifier as a search token, `system|value`, each part escaped (R4
    search.html#escaping); None for a resource that is not a person with one."""
    key = person_key(resource)
    return None if key is None else _token(key)


def _token(key: tuple[str, str]) -> str:
    return system_value(*key)


def without_server_elements(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as sent: no id, and a meta without what a server sets (our tags and profiles stay)."""
    out = {k: v for k, v in resource.items() if k != "id"}
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in SERVER_META}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


def _data(resource: dict[str, Any]) -> dict[str, Any]:
    """What a person says, for comparison: not its id, meta or narrative."""
    return {k: v for k, v in resource.items() if k not in ("id", "meta", "text")}
