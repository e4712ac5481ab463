"""Referential integrity: of written resources (placeholders left unresolved, references to what is not held)
and of deletes (what still refers to a deleted resource)."""
from __future__ import annotations

from typing import Any

from service.errors import BadRequest, Conflict, Issue
from service.fhirjson import references
from service.search.parameters import TYPES
from service.store.resources import Unit

#: references that stand for an entry of the same Bundle until its stored id replaces them (interactions.py)
PLACEHOLDERS = ("urn:uuid:", "urn:oid:")


def check_references(unit: Unit, resource: dict[str, Any], pending: set[str],
                     found: list[tuple[str, str]] | None = None, exists: bool = True) -> None:
    """Referential integrity on write, as HAPI enforces it: a relative reference to a type this
    server serves must name a resource it holds, or one the same transaction writes (`pending`);
    absolute URLs point elsewhere and are not checked, nor references to a type the writing client may not read
    (the answer would reveal whether the id exists). A placeholder (urn:uuid:, urn:oid:) still there
    after that named no entry of a transaction: it resolves nowhere (references.html: SHALL be
    resolvable), in a Bundle or sent alone: 400, as HAPI answers it ("Unable to satisfy placeholder ID",
    an InvalidRequestException).

    `found`: the resource's references (fhirjson.rewritten), when the caller has them already. `exists` False:
    only placeholders are checked (a clinic record's resources refer ahead, bundles.export_record)."""
    if found is None:
        found = list(references(resource, resource.get("resourceType", ""), contained=False))
    dangling = [Issue(path, f"{ref} names no entry of this request") for path, ref in found
                if ref.startswith(PLACEHOLDERS)]
    if dangling:
        raise BadRequest(f"The reference {dangling[0].message.split(' ')[0]} names no entry of a transaction "
                       f"Bundle (a placeholder resolves only within one).", dangling)
    if not exists:
        return
    checked = []
    for path, ref in found:
        parts = ref.split("/_history/")[0].split("/")
        if len(parts) != 2 or parts[0] not in TYPES or "?" in ref or "/".join(parts) in pending:
            continue
        if not unit.permits(parts[0], "r"):  # a 400 for a missing one would tell a client that may not read
            continue  # that type which ids exist (a Patient's, say): such references are not checked for it
        checked.append((path, ref, parts[0], parts[1]))
    unit.prefetch([(resource_type, resource_id) for _, _, resource_type, resource_id in checked])
    missing = []
    for path, ref, resource_type, resource_id in checked:
        stored = unit.get(resource_type, resource_id)
        if stored is None or stored.deleted:
            missing.append(Issue(path, f"{ref} is not a resource of this server"))
    if missing:
        raise BadRequest(f"The resource refers to resources this server does not hold: "
                         f"{', '.join(i.message.split(' ')[0] for i in missing)}.", missing)



def check_referrers(unit: Unit, keys: list[str]) -> None:
    """Referential integrity on delete, as HAPI enforces it: 409 while a current resource other than those
    deleted refers to one of `keys` (`Type/id`), naming the referrers (at most 20) and where they refer.
    Provenance does not count: it is the record of what happened, and keeps its target's history readable."""
    found = [(who, path, what) for who, path, what in unit.referrers(keys) if who not in keys]
    if found:
        named = list(dict.fromkeys(who for who, _, _ in found))
        one = len(named) == 1
        raise Conflict(f"Unable to delete {', '.join(sorted({what for _, _, what in found}))}: "
                       f"{', '.join(named)} refer{'s' if one else ''} to it. Delete or change "
                       f"{'it' if one else 'them'} first.",
                       [Issue(path, f"{who} refers to {what} at {path}") for who, path, what in found])
