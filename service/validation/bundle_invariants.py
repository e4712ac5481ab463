"""Native fast paths for R4's Bundle invariants, whose FHIRPath walks every entry (bdl-2, -3, -4, -7, -11, -12), runs
once per entry (bdl-5, -8) or once per Bundle (bdl-1, -9, -10, ~50 µs of a Bundle through compiled FHIRPath): through
FHIRPath they made an entry of a Bundle dearer than the same resource alone.

Each answers exactly as its FHIRPath does (fhirpathpy's semantics, as fhirpath_compiled's), or None to defer to
FHIRPath whenever the JSON is not plain: a `_field` extension holder, a value of an unexpected JSON type, an entry
that is not an object. tests/validation/test_bundle_invariants.py compares them with fhirpathpy."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: a FHIRPath member navigation that is not empty: the value, or its `_name` holder, is neither null nor []
_ABSENT: tuple[None, list[Any]] = (None, [])


#: the `_name` holder of each element these paths test (built once, not per entry)
_HOLDERS = {key: "_" + key for key in ("fullUrl", "search", "request", "response", "resource")}


#: (id of a Bundle, its type) when Bundles._bundle last found every entry of it bare (Bundles._bare: an object
#: holding only a RESTful fullUrl, each another, naming its resource, whose meta has no versionId) and its type and
#: entry list plain (no `_type` or `_entry` holder, a type absent or a string): the Bundle rules then read its type
#: from here and the entries' answers follow from it, and the walk gives each entry's resource to _resource outright.
#: Said for each Bundle before its walk and rules, which follow in the same validation while it lives: an id that
#: matches is that Bundle's, no other living object having it. An id, not the object: it keeps no document alive.
#: Another thread's Bundle said in between only sends them the long way, as for any other Bundle.
_SAID: list[tuple[int, tuple[bool, str | None, bool]] | None] = [None]


def say(bundle: dict[str, Any], kind: Any, bare: bool) -> None:
    """Bundles._bundle's word on a Bundle (`kind`, its type): whether its entries are bare."""
    _SAID[0] = (id(bundle), (True, kind, True)) if bare and "_type" not in bundle and "_entry" not in bundle \
        and (kind is None or isinstance(kind, str)) else None


def said_bare(bundle: Any) -> bool:
    """Whether the entries of `bundle` were last said bare."""
    said = _SAID[0]
    return said is not None and said[0] == id(bundle)


def _typed(node: Any) -> tuple[bool, str | None, bool]:
    """_bundle_type's (plain, Bundle.type) of `node`, and whether its entries were said bare (then from _SAID)."""
    said = _SAID[0]
    if said is not None and said[0] == id(node):
        return said[1]
    plain, kind = _bundle_type(node)
    return plain, kind, False


def _exists(node: dict[str, Any], key: str) -> bool:
    return node.get(key) not in _ABSENT or node.get(_HOLDERS[key]) not in _ABSENT


def _entry_list(bundle: Any) -> list[Any] | None:
    """Bundle.entry as a list, or None when FHIRPath would see anything else. Each entry is then checked plain
    (an object without `resourceType`, which would make it a resource to FHIRPath) in the loop that reads it, so
    the Bundle invariants pass over the entries once each."""
    if not isinstance(bundle, dict) or "_entry" in bundle:
        return None
    entries = bundle.get("entry")
    if entries is None or entries == []:
        return []
    return entries if type(entries) is list else None


def _bundle_type(resource: Any) -> tuple[bool, str | None]:
    """(plain, Bundle.type): plain when type is absent or a string and has no `_type` holder."""
    if not isinstance(resource, dict) or "_type" in resource:
        return False, None
    kind = resource.get("type")
    return (kind is None or isinstance(kind, str)), kind if isinstance(kind, str) else None


def _none_has(entries: list[Any], keys: frozenset[str]) -> bool:
    """Whether every entry is an object with none of `keys` as a member: the entries of nearly every Bundle, for
    one of the rules below, tested in C (map over the entries) rather than by a Python loop per entry and rule."""
    return bool(entries) and set(map(type, entries)) == {dict} and all(map(keys.isdisjoint, entries))


#: per field, the members that make an entry other than a plain one without it: its `resourceType` (a resource to
#: FHIRPath), the field or its `_field` holder (present, so perhaps existing)
_WITHOUT = {key: frozenset({"resourceType", key, "_" + key}) for key in ("search", "request", "response")}


def _entries_say(field: str, kinds: frozenset[str]) -> Callable[[Any, Any], bool | None]:
    """bdl-3/bdl-4: `entry.all(<field>.exists() = (%resource.type = k1 or … ))`. With no type, the right side is
    empty, so `=` is empty and every entry fails `all`."""
    def check(node: Any, resource: Any) -> bool | None:
        plain, kind, bare = _typed(resource)
        if bare and resource is node:  # objects without the field
            return kind is not None and kind not in kinds
        entries = _entry_list(node)
        if entries is None or not plain:
            return None
        wanted, holder, answer = kind in kinds, _HOLDERS[field], True
        if not wanted and kind is not None and _none_has(entries, _WITHOUT[field]):
            return True  # plain entries, none with the field: the loop below would say so
        for entry in entries:
            if type(entry) is not dict or "resourceType" in entry:
                return None
            if answer and (entry.get(field) not in _ABSENT or entry.get(holder) not in _ABSENT) is not wanted:
                answer = False
        return not entries if kind is None else answer
    return check


def _full_urls_distinct(node: Any, resource: Any) -> bool | None:
    """bdl-7: `(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId)
    .isDistinct()`. The right side is evaluated (and may fail) whatever the left says; with no type the left is
    empty, and `{} or x` is x when true, else empty, which fails the invariant."""
    plain, kind, bare = _typed(node)
    if bare:  # each key a fullUrl, each another
        return True
    entries = _entry_list(node)
    if entries is None or not plain:
        return None
    keys: set[str] = set()
    count = 0
    for entry in entries:
        if type(entry) is not dict or "resourceType" in entry:
            return None
        full_url = entry.get("fullUrl")
        if type(full_url) is not str or "_fullUrl" in entry:  # not the plain fullUrl of nearly every entry
            if not _exists(entry, "fullUrl"):
                continue
            if "_fullUrl" in entry or not isinstance(full_url, str):
                return None
        resource = entry.get("resource")
        meta = resource.get("meta", _NO_META) if resource.__class__ is dict else None
        if meta.__class__ is dict and "versionId" not in meta and "_versionId" not in meta \
                and "resourceType" not in meta and "_meta" not in resource and "_resource" not in entry:
            keys.add(full_url)  # the plain meta of nearly every entry (or none), without a versionId: `&` adds ''
        else:
            version = _version_id(entry)
            if version is None:
                return None
            keys.add(full_url + version)
        count += 1
    if kind == "history":
        return True
    return len(keys) == count


#: an absent meta, read as the plain meta without a versionId it amounts to (bdl-7: `&` adds '' for either)
_NO_META: dict[str, Any] = {}


def _version_id(entry: dict[str, Any]) -> str | None:
    """resource.meta.versionId of an entry as `&` sees it ('' when absent), or None when not plain."""
    resource = entry.get("resource")
    if "_resource" in entry or resource in _ABSENT:
        return "" if "_resource" not in entry else None
    if type(resource) is not dict:
        return None
    meta = resource.get("meta")
    if "_meta" in resource or meta in _ABSENT:
        return "" if "_meta" not in resource else None
    if type(meta) is not dict or "resourceType" in meta or "_versionId" in meta:
        return None
    version = meta.get("versionId")
    if version in _ABSENT:
        return ""
    return version if isinstance(version, str) else None


def _searched_only_in_searchsets(node: Any, resource: Any) -> bool | None:
    """bdl-2: `entry.search.empty() or (type = 'searchset')`. With no type the right side is empty, and
    `false or {}` is empty, which fails the invariant."""
    plain, kind, bare = _typed(node)
    if bare:  # objects without a search
        return True
    entries = _entry_list(node)
    if entries is None or not plain:
        return None
    if _none_has(entries, _WITHOUT["search"]):
        return True  # plain entries, none with a search: the loop below would say so
    searched = False
    for entry in entries:
        if type(entry) is not dict or "resourceType" in entry:
            return None
        if not searched and (entry.get("search") not in _ABSENT or entry.get("_search") not in _ABSENT):
            searched = True
    return kind == "searchset" or not searched


def _first_entry_is(bundle_type: str, resource_type: str) -> Callable[[Any, Any], bool | None]:
    """bdl-11/bdl-12: `type = '<bundle_type>' implies entry.first().resource.is(<resource_type>)`. Through FHIRPath
    they made a node of every entry. Both sides are evaluated; `{} implies x` is true when x is, else empty, and
    `true implies {}` is empty: both fail the invariant. A first resource that is no object with a resourceType
    (or behind a holder) is left to FHIRPath."""
    def check(node: Any, resource: Any) -> bool | None:
        plain, kind, bare = _typed(node)
        if bare:  # a first entry as plain as can be
            return kind is not None and kind != bundle_type or node["entry"][0]["resource"]["resourceType"] == \
                resource_type
        entries = _entry_list(node)
        if entries is None or not plain:
            return None
        right: bool | None = None  # empty: no entry, or a first entry without a resource
        if entries:
            first = entries[0]  # only the first entry is read: the others, whatever they hold, do not matter
            if type(first) is not dict or "resourceType" in first or "_resource" in first:
                return None
            value = first.get("resource")
            if value not in _ABSENT:
                if type(value) is not dict or not isinstance(value.get("resourceType"), str):
                    return None
                right = value["resourceType"] == resource_type
        if kind is not None and kind != bundle_type:
            return True
        return right is True
    return check


def _entry_has_content(node: Any, resource: Any) -> bool | None:
    """bdl-5: `resource.exists() or request.exists() or response.exists()`."""
    # a plain Bundle.entry (a `resourceType` would make it a resource to FHIRPath); this runs for every entry
    if type(node) is not dict or "resourceType" in node:
        return None
    return node.get("resource") not in _ABSENT or node.get("_resource") not in _ABSENT \
        or node.get("request") not in _ABSENT or node.get("_request") not in _ABSENT \
        or node.get("response") not in _ABSENT or node.get("_response") not in _ABSENT


def _no_history_in_full_url(node: Any, resource: Any) -> bool | None:
    """bdl-8: `fullUrl.exists() implies fullUrl.contains('/_history/').not()`."""
    if type(node) is not dict or "resourceType" in node or "_fullUrl" in node:
        return None
    full_url = node.get("fullUrl")
    if type(full_url) is str:
        return "/_history/" not in full_url
    return True if full_url in _ABSENT else None


def _plain_scalar(node: dict[str, Any], key: str) -> bool | None:
    """Whether `key` of `node` exists to FHIRPath, when plain: a string or number (True), absent or null or []
    (False); None (defer) for anything else, or a `_key` holder."""
    if "_" + key in node:
        return None
    value = node.get(key)
    if value in _ABSENT:
        return False
    return True if type(value) in (str, int, float) else None


def _total_only_in_search_or_history(node: Any, resource: Any) -> bool | None:
    """bdl-1: `total.empty() or (type = 'searchset') or (type = 'history')`. With no type both right sides are
    empty, and `false or {}` is empty, which fails the invariant."""
    plain, kind, _ = _typed(node)
    total = _plain_scalar(node, "total") if plain else None
    if total is None:
        return None
    return not total or kind in ("searchset", "history")


def _document_implies(right: Callable[[dict[str, Any]], bool | None]) -> Callable[[Any, Any], bool | None]:
    """`type = 'document' implies <right>`, for a `right` that is true or false (never empty) on plain JSON.
    Both sides are evaluated; with no type, `{} implies false` is empty, which fails the invariant."""
    def check(node: Any, resource: Any) -> bool | None:
        plain, kind, _ = _typed(node)
        answer = right(node) if plain else None
        if answer is None:
            return None
        return answer if kind is None or kind == "document" else True
    return check


def _identified(node: dict[str, Any]) -> bool | None:
    """bdl-9's right side: `identifier.system.exists() and identifier.value.exists()`."""
    if "_identifier" in node:
        return None
    identifier = node.get("identifier")
    if identifier in _ABSENT:
        return False
    if type(identifier) is not dict or "resourceType" in identifier:
        return None
    system, value = _plain_scalar(identifier, "system"), _plain_scalar(identifier, "value")
    return None if system is None or value is None else system and value


def _timestamped(node: dict[str, Any]) -> bool | None:
    """bdl-10's right side: `timestamp.hasValue()` (invariants._has_value): a string is a value, absence is not."""
    if "_timestamp" in node:
        return None
    timestamp = node.get("timestamp")
    return True if type(timestamp) is str else False if timestamp in _ABSENT else None


#: expression → fast path taking (node, %resource)
BUNDLE: dict[str, Callable[[Any, Any], bool | None]] = {
    "total.empty() or (type = 'searchset') or (type = 'history')": _total_only_in_search_or_history,
    "type = 'document' implies (identifier.system.exists() and identifier.value.exists())":
        _document_implies(_identified),
    "type = 'document' implies (timestamp.hasValue())": _document_implies(_timestamped),
    "entry.search.empty() or (type = 'searchset')": _searched_only_in_searchsets,
    "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = 'transaction' or "
    "%resource.type = 'history'))": _entries_say("request", frozenset({"batch", "transaction", "history"})),
    "entry.all(response.exists() = (%resource.type = 'batch-response' or %resource.type = 'transaction-response' "
    "or %resource.type = 'history'))": _entries_say("response", frozenset({"batch-response", "transaction-response",
                                                                            "history"})),
    "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId).isDistinct()":
        _full_urls_distinct,
    "type = 'document' implies entry.first().resource.is(Composition)": _first_entry_is("document", "Composition"),
    "type = 'message' implies entry.first().resource.is(MessageHeader)": _first_entry_is("message", "MessageHeader"),
    "resource.exists() or request.exists() or response.exists()": _entry_has_content,
    "fullUrl.exists() implies fullUrl.contains('/_history/').not()": _no_history_in_full_url,
}
