"""Search and history: searchset and history Bundles, with _include, _revinclude, _summary/_elements and paging."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from service.errors import BadRequest, Issue, NotFound
from service.facade.subsets import subset
from service.fhirjson import etag, issue, outcome
from service.params import date_range, integer
from service.search.parameters import params_of, reference_key, values_at
from service.search.query import Query, parse
from service.security.scopes import insufficient
from service.store.resources import ResourceStore, Unit
from service.store.stored import StoredResource, StoredText, instant


def search(store: ResourceStore, resource_type: str, items: list[tuple[str, str]], base: str,
           lenient: bool = False, can_read: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """`can_read`: an `_include` of a type the caller may not read is refused (typed) or left out (untyped)."""
    query = _checked(resource_type, items, lenient, can_read)
    with store.unit() as unit:
        found, total = unit.search(query)
        included = [r for r in _includes(unit, query, found) if can_read is None or can_read(r.resource_type)]
        included += _revincludes(unit, query, found, included)
    entries = [_entry(base, r, "match", query) for r in found] + [_entry(base, r, "include", query)
                                                                   for r in included]
    bundle = _searchset(query, items, base, len(found), total)
    bundle["entry"] = entries
    if query.ignored:
        bundle["entry"].append(_ignored(query))
    return bundle


@dataclass(frozen=True)
class Searchset:
    """A searchset as JSON text, and its outline: the Bundle with each entry's resource cut to its type, id, subject and
    patient references (and a Patient's identifiers): what the request's audit event reads, so that it need not
    parse the text again (the whole Bundle, when it was built as objects)."""

    text: str
    outline: dict[str, Any]


def search_json(store: ResourceStore, resource_type: str, items: list[tuple[str, str]], base: str,
                lenient: bool = False, can_read: Callable[[str], bool] | None = None) -> Searchset:
    """search() as JSON text, exactly as json.dumps(search(...), ensure_ascii=False) writes it: each resource's
    stored JSON text spliced in as it is, not parsed and serialised again (a third of a served search's CPU). The
    stored text is json.dumps of the content with ASCII escapes, so it is the same text unless it holds an escape
    (\\u…: a character outside ASCII, or a control character), which is written again as search() would. With
    _include, _revinclude, _summary or _elements, the resources are read as objects: search()."""
    query = _checked(resource_type, items, lenient, can_read)
    if query.include or query.revinclude or query.summary or query.elements:
        bundle = search(store, resource_type, items, base, lenient, can_read)
        return Searchset(json.dumps(bundle, ensure_ascii=False), bundle)
    with store.unit() as unit:
        found, total = unit.search_texts(query)
    outline = _searchset(query, items, base, len(found), total)
    head = json.dumps(outline, ensure_ascii=False)
    entries = [f'{{"fullUrl": {json.dumps(f"{base}/{r.resource_type}/{r.id}", ensure_ascii=False)}, "resource": '
               f'{_as_written(r.text)}, "search": {{"mode": "match"}}}}' for r in found]
    outline["entry"] = [{"resource": _outline(r)} for r in found]
    if query.ignored:
        outline["entry"].append(_ignored(query))
        entries.append(json.dumps(outline["entry"][-1], ensure_ascii=False))
    return Searchset(f'{head[:-1]}, "entry": [{", ".join(entries)}]}}', outline)


def _outline(found: StoredText) -> dict[str, Any]:
    """A stored resource as Searchset.outline shows it."""
    resource: dict[str, Any] = {"resourceType": found.resource_type, "id": found.id}
    for name, reference in (("subject", found.subject), ("patient", found.patient)):
        if reference is not None:
            resource[name] = {"reference": reference}
    if found.resource_type == "Patient":  # rare on a page, and small: parsed for its identifiers
        identifiers = json.loads(found.text).get("identifier")
        if identifiers is not None:
            resource["identifier"] = identifiers
    return resource


def _as_written(text: str) -> str:
    """A stored JSON text as json.dumps(ensure_ascii=False) writes its content."""
    return json.dumps(json.loads(text), ensure_ascii=False) if "\\u" in text else text


def _checked(resource_type: str, items: list[tuple[str, str]], lenient: bool,
             can_read: Callable[[str], bool] | None) -> Query:
    query = parse(resource_type, items, lenient)
    for _, _name, target in query.include:
        if target is not None and can_read is not None and not can_read(target):
            raise insufficient(target, "r", f"_include of {target}")
    for source, _name, _target in query.revinclude:
        if can_read is not None and not can_read(source):
            raise insufficient(source, "r", f"_revinclude of {source}")
    return query


def _searchset(query: Query, items: list[tuple[str, str]], base: str, shown: int, total: int | None
               ) -> dict[str, Any]:
    """The searchset Bundle up to its entries: type, total if known, the page's links."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    kept = [(k, v) for k, v in items if k not in ("_offset",) and k not in query.ignored]
    bundle["link"] = _page_links(f"{base}/{query.resource_type}", kept, query.offset, query.count, shown, total)
    return bundle


def _ignored(query: Query) -> dict[str, Any]:
    outcome_ = outcome(issue("warning", "not-supported", f"Ignored: {name}", name) for name in query.ignored)
    return {"resource": outcome_, "search": {"mode": "outcome"}}


def _includes(unit: Unit, query: Query, found: list[StoredResource]) -> list[StoredResource]:
    keys: list[str] = []
    for _, param_name, target in query.include:
        param = params_of(query.resource_type)[param_name]
        for resource in found:
            for path in param.paths:
                for value in values_at(resource.content or {}, path):
                    key = reference_key(value)
                    if key and (target is None or key.startswith(target + "/")):
                        keys.append(key)
    seen = {(r.resource_type, r.id) for r in found}
    return [r for r in unit.by_keys(keys) if (r.resource_type, r.id) not in seen]


def _revincludes(unit: Unit, query: Query, found: list[StoredResource], shown: list[StoredResource]
                 ) -> list[StoredResource]:
    keys = [f"{r.resource_type}/{r.id}" for r in found]
    seen = {(r.resource_type, r.id) for r in [*found, *shown]}
    out: list[StoredResource] = []
    for source, param_name, _target in query.revinclude:
        for r in unit.referring(source, param_name, keys):
            if (r.resource_type, r.id) not in seen:
                seen.add((r.resource_type, r.id))
                out.append(r)
    return out


def history(store: ResourceStore, base: str, resource_type: str | None = None, resource_id: str | None = None,
            items: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    args = dict(items or [])
    unknown = sorted(set(args) - {"_since", "_count", "_offset", "_format", "_pretty"})
    if unknown:
        raise BadRequest("History takes _since, _count and _offset only.",
                         [Issue(n, "not supported") for n in unknown])
    since = _since(args.get("_since"))
    count = integer(args, "_count", 20, 1, 200)
    offset = integer(args, "_offset", 0, 0, 1_000_000)
    with store.unit() as unit:
        if resource_id is not None and resource_type is not None and unit.get(resource_type, resource_id) is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known to this server.")
        versions, total = unit.history(resource_type, resource_id, since, count, offset)
    path = "/".join(p for p in (base, resource_type, resource_id, "_history") if p)
    kept = [(k, v) for k, v in (items or []) if k != "_offset"]
    return {"resourceType": "Bundle", "type": "history", "total": total,
            "link": _page_links(path, kept, offset, count, len(versions), total),
            "entry": [_history_entry(base, v) for v in versions]}


def _entry(base: str, resource: StoredResource, mode: str, query: Query | None = None) -> dict[str, Any]:
    content = resource.content or {}
    if query is not None:
        content = subset(content, query.summary, query.elements)
    return {"fullUrl": f"{base}/{resource.resource_type}/{resource.id}", "resource": content,
            "search": {"mode": mode}}


def _history_entry(base: str, v: StoredResource) -> dict[str, Any]:
    url = f"{v.resource_type}/{v.id}"
    entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if v.content is not None:
        entry["resource"] = v.content
    status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[v.method or "PUT"]
    if v.method == "PUT" and v.version == 1:
        status = "201 Created"
    entry["request"] = {"method": v.method, "url": url if v.method != "POST" else v.resource_type}
    entry["response"] = {"status": status, "etag": etag(v.version), "lastModified": instant(v.last_updated)}
    return entry


def _page_links(path: str, items: list[tuple[str, str]], offset: int, count: int, shown: int,
                total: int | None) -> list[dict[str, str]]:
    def url(at: int) -> str:
        query = [(k, v) for k, v in items if k != "_count"] + [("_count", str(count))]
        if at:
            query.append(("_offset", str(at)))
        return f"{path}?{urlencode(query)}"

    links = [{"relation": "self", "url": url(offset)}]
    more = (offset + shown < total) if total is not None else shown == count and count > 0
    if more:
        links.append({"relation": "next", "url": url(offset + count)})
    if offset > 0:
        links.append({"relation": "previous", "url": url(max(0, offset - count))})
    return links


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    found = date_range(raw.replace(" ", "+"))
    if found is None or "T" not in raw:
        raise BadRequest("_since must be a FHIR instant, e.g. 2026-03-02T09:00:00Z.", [Issue("_since", f"got {raw!r}")])
    return found[0]

