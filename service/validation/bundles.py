"""Rules of a Bundle that no StructureDefinition states (R4 bundle.html; the HL7 validator's BundleValidator):
fullUrls, link relations, search set entries, references a document must resolve inside itself."""
from __future__ import annotations

import re
from dataclasses import replace
from itertools import islice
from typing import Any

from service.validation import bundle_invariants
from service.validation.invariants import bundle_path
from service.validation.plan import StructurePlan
from service.validation.references import LITERAL_REFERENCE, as_list
from service.validation.run import Run

ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
#: beginnings that ABSOLUTE matches, the fullUrls of nearly every Bundle: a string test, not the regex
ABSOLUTE_PREFIXES = ("http://", "https://", "urn:uuid:", "urn:oid:")
RESTFUL = ("http://", "https://")
#: Bundle types whose entries need no fullUrl (R4 Bundle.entry.fullUrl: "fullUrl may be omitted" for these)
FULL_URL_OPTIONAL = {"transaction", "transaction-response", "batch", "batch-response"}
PAGING = ("first", "previous", "next", "last")
#: the Composition's references a document must resolve inside itself: (element, repeats)
DOCUMENT_REFERENCES = (("subject", False), ("author", True), ("encounter", False), ("custodian", False))


class Bundles:
    """Mixed into the Validator: a Bundle's own rules, checked once per Bundle before its entries are walked."""

    _resource_types: set[str]
    #: per Bundle plan (by id, the plans being kept by the validator): its root rules answered by a native path
    #: (bit, path), and the plan without each set of them (by bits) that has held
    _bundle_rules: dict[int, tuple[list[tuple[int, Any]], dict[int, StructurePlan]]]

    def _bundle(self, bundle: dict[str, Any], expr: str, run: Run, plans: list[StructurePlan]) \
            -> list[StructurePlan]:
        """The Bundle's own rules; `plans`, its plans, returned without the root rules that hold (_rules_left)."""
        kind = bundle.get("type")
        listed = bundle.get("entry")
        bare = listed.__class__ is list and listed and self._bare(listed, run)
        bundle_invariants.say(bundle, kind, bool(bare))
        if bare:  # nothing to say of any entry's fullUrl, and bdl-5 and bdl-8 hold for each
            run.quiet_entries = listed
        else:
            self._entries(listed, expr, run)
        self._links(bundle, kind, expr, run)
        if kind in ("searchset", "document"):
            entries = [e if isinstance(e, dict) else {} for e in as_list(listed)]
            if kind == "searchset":
                self._search_entries(bundle, entries, expr, run)
            elif entries and isinstance(entries[0].get("resource"), dict):
                self._document(entries, expr, run)
        return [self._rules_left(bundle, plan) for plan in plans]

    def _rules_left(self, bundle: dict[str, Any], plan: StructurePlan) -> StructurePlan:
        """`plan` without the root rules that hold of `bundle` by their native paths (bundle_invariants.BUNDLE,
        which Invariants.holds would answer them by after the walk, these reading the document alone): the root's
        constraints are then asked only the others, in their order. A rule that holds says nothing, so the findings
        and their order are those of asking all; a Bundle is spared the dispatch of nine rules through
        Values._constraints and Invariants.holds, a tenth of what its entries cost in a Bundle of ten."""
        known = self._bundle_rules.get(id(plan))
        if known is None:
            known = self._bundle_rules[id(plan)] = ([(1 << i, path) for i, rule in enumerate(plan.root.constraints)
                                                     if (path := bundle_path(rule.expression)) is not None], {})
        held = 0
        for bit, path in known[0]:
            if path(bundle, bundle):  # %resource is the Bundle when its root's rules are asked
                held |= bit
        if not held:
            return plan
        left = known[1].get(held)
        if left is None:
            rules = plan.root.constraints
            left = known[1][held] = StructurePlan(plan.url, plan.type, replace(plan.root, constraints=tuple(
                rule for i, rule in enumerate(rules) if not held >> i & 1)))
        return left

    def _bare(self, listed: list[Any], run: Run) -> bool:
        """Whether every entry is bare: an object holding a fullUrl and a resource and nothing else, the fullUrl
        RESTful (http or https, one base for all, without whitespace or /_history/) and ending with its resource's
        type (one we know) and id, the resource's meta, if any, an object without a versionId, every fullUrl
        another. The entries of nearly every collection Bundle: nothing is to be said of their fullUrls (here, or by
        the walk: its uri check), nor of bdl-5, bdl-7 and bdl-8 (bundle_invariants.say),
        and run.full_urls gets each as _entries gives it. One pass of subscripts (an odd entry raises, the rare one
        that does not is told by its tests), then tests of the fullUrls joined, not a call per entry and rule.
        False otherwise, with run.full_urls perhaps given some of them: _entries gives each again, in order."""
        full_urls, types = run.full_urls, self._resource_types
        before = len(full_urls)
        try:
            url, resource = listed[0]["fullUrl"], listed[0]["resource"]
            base = url[:len(url) - len(resource["resourceType"]) - len(resource["id"]) - 1]
            for entry in listed:
                url, resource = entry["fullUrl"], entry["resource"]
                named, ident = resource["resourceType"], resource["id"]
                if entry.__class__ is not dict or len(entry) != 2 or resource.__class__ is not dict \
                        or url.__class__ is not str or ident.__class__ is not str or named not in types \
                        or url != f"{base}{named}/{ident}" or "_meta" in resource:
                    return False
                if "meta" in resource:  # bdl-7's key is then the fullUrl: `&` adds '' for no versionId
                    meta = resource["meta"]
                    if meta.__class__ is not dict or "versionId" in meta or "_versionId" in meta \
                            or "resourceType" in meta:
                        return False
                full_urls[url] = named
        except (KeyError, TypeError):  # an entry or resource that is no object, or without one of the four
            return False
        count = len(listed)
        if len(full_urls) - before != count or not base.startswith(RESTFUL) or not base.endswith("/") \
                or "/_history/" in base:
            return False
        # the uri regex (\S*, ASCII) on each: no whitespace but the joins; no / in any id (each ends the base's /s
        # and the one after its type, which has none): _ends_with_type_and_id's terms, and no /_history/ then
        joined = "\n".join(islice(full_urls, before, None))
        return " " not in joined and "\t" not in joined and "\r" not in joined and "\f" not in joined \
            and "\v" not in joined and joined.count("\n") == count - 1 \
            and joined.count("/") == count * (base.count("/") + 1)

    def _entries(self, listed: Any, expr: str, run: Run) -> None:
        """Each entry's fullUrl: what references resolve to (run.full_urls), its form; whether the entries are
        quiet (bdl-5 and bdl-8 hold for each)."""
        full_urls = run.full_urls
        # whether every entry is a plain object with a resource and a fullUrl without /_history/, so that bdl-5 and
        # bdl-8 hold for each: the walk then answers them once for the list (walkers._constraints), not per entry
        quiet = listed.__class__ is list
        for i, entry in enumerate(as_list(listed)):  # one pass: what references resolve to, each fullUrl's form
            if not isinstance(entry, dict):
                quiet = False
                continue
            full_url, resource = entry.get("fullUrl"), entry.get("resource")
            if quiet and (full_url.__class__ is not str or resource.__class__ is not dict or "/_history/" in full_url
                          or entry.__class__ is not dict or "resourceType" in entry or "_fullUrl" in entry):
                quiet = False
            if not isinstance(full_url, str):
                continue
            if isinstance(resource, dict) and isinstance(named := resource.get("resourceType"), str):
                full_urls[full_url] = named
                # the RESTful fullUrl of nearly every entry, ending with its resource's type and id: nothing to say
                # (_ends_with_type_and_id written out: this runs for every entry)
                ident = resource.get("id")
                if full_url.startswith(RESTFUL) and isinstance(ident, str) and full_url.endswith(f"/{named}/{ident}") \
                        and named != "_history" and "/" not in named and "/" not in ident and "\n" not in ident:
                    continue
            if full_url:
                self._full_url(full_url, resource, expr, i, run)
        if quiet:
            run.quiet_entries = listed

    def _full_url(self, full_url: str, resource: Any, expr: str, i: int, run: Run) -> None:
        """fullUrl is absolute (a URL, urn:uuid: or urn:oid:); a RESTful one ends with the resource's type and id.
        Per entry of every Bundle, so the common forms are decided by string tests (exactly what the regexes say of
        them, tests/validation/test_rules.py compares the two); the regexes only see the rest."""
        if not full_url.startswith(ABSOLUTE_PREFIXES) and not ABSOLUTE.match(full_url):
            run.add("error", "invalid", f"{expr}.entry[{i}].fullUrl",
                    f"fullUrl {full_url!r} must be an absolute URL (or a urn:uuid: / urn:oid:), not a relative one.")
            return
        # Only an http(s) URL can be RESTful (LITERAL_REFERENCE's group 2), and only one with a resource be wrong
        if not isinstance(resource, dict) or not full_url.startswith(RESTFUL) \
                or _ends_with_type_and_id(full_url, resource):
            return
        match = LITERAL_REFERENCE.match(full_url)
        if match and match.group(2) and (match.group(3), match.group(4)) != (resource.get("resourceType"),
                                                                            resource.get("id")):
            run.add("error", "invalid", f"{expr}.entry[{i}].fullUrl",
                    f"fullUrl {full_url} does not match the resource's type and id "
                    f"({resource.get('resourceType')}/{resource.get('id')}).")

    def _links(self, bundle: dict[str, Any], kind: Any, expr: str, run: Run) -> None:
        """A link relation names one link: each at most once; a document is no page of a search."""
        seen: set[str] = set()
        for i, link in enumerate(as_list(bundle.get("link"))):
            relation = link.get("relation") if isinstance(link, dict) else None
            if not isinstance(relation, str):
                continue
            where = f"{expr}.link[{i}].relation"
            if kind in ("document", "message") and relation in PAGING:
                run.add("error", "invalid", where, f"A {kind} Bundle has no '{relation}' link: paging links belong "
                                                   f"to search results and histories.")
            elif relation in seen:
                run.add("error", "invalid", where, f"The link relation '{relation}' appears more than once.")
            seen.add(relation)

    def _search_entries(self, bundle: dict[str, Any], entries: list[dict[str, Any]], expr: str, run: Run) -> None:
        """A search set's matches and includes are resources with ids; matches are of the searched type(s) (from the
        self link); an outcome is an OperationOutcome."""
        types = _searched_types(bundle)
        for i, entry in enumerate(entries):
            resource, search = entry.get("resource"), entry.get("search")
            mode = search.get("mode") if isinstance(search, dict) else None
            if not isinstance(resource, dict) or mode is None:
                continue
            where, kind = f"{expr}.entry[{i}].resource", resource.get("resourceType")
            if mode in ("match", "include") and resource.get("id") is None:
                run.add("error", "invalid", where, f"A search set's {mode} entry must have a resource id.")
            if mode == "match" and types and kind not in types:
                run.add("error", "invalid", where, f"A {kind} is not what was searched for ({', '.join(types)}).")
            if mode == "outcome" and kind != "OperationOutcome":
                run.add("error", "invalid", where, f"A search set's outcome entry is an OperationOutcome, not {kind}.")

    def _document(self, entries: list[dict[str, Any]], expr: str, run: Run) -> None:
        """R4 documents.html: the first entry is the Composition, and what it refers to is in the Bundle."""
        composition, base = entries[0]["resource"], entries[0].get("fullUrl")
        where = f"{expr}.entry[0].resource"
        if composition.get("resourceType") != "Composition":
            run.add("error", "invalid", where, "The first entry of a document is its Composition.")
            return
        for name, repeats in DOCUMENT_REFERENCES:
            values = as_list(composition.get(name)) if repeats else [composition.get(name)]
            for j, ref in enumerate(values):
                self._in_bundle(ref, entries, base, f"{where}.{name}" + (f"[{j}]" if repeats else ""), run)
        self._sections(as_list(composition.get("section")), entries, base, f"{where}.section", run)

    def _sections(self, sections: list[Any], entries: list[dict[str, Any]], base: Any, expr: str, run: Run) -> None:
        for i, section in enumerate(s for s in sections if isinstance(s, dict)):
            for j, ref in enumerate(as_list(section.get("entry"))):
                self._in_bundle(ref, entries, base, f"{expr}[{i}].entry[{j}]", run)
            self._sections(as_list(section.get("section")), entries, base, f"{expr}[{i}].section", run)

    def _in_bundle(self, ref: Any, entries: list[dict[str, Any]], base: Any, expr: str, run: Run) -> None:
        target = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(target, str) or target.startswith("#"):
            return
        found = resolve_in_bundle(target, entries, base if isinstance(base, str) else None)
        if not found:
            run.add("error", "not-found", f"{expr}.reference", f"{target} is not in the document: a document "
                                                               f"holds every resource its Composition refers to.")
        elif len(found) > 1:
            run.add("error", "invalid", f"{expr}.reference", f"{target} matches {len(found)} entries of the Bundle.")


def resolve_in_bundle(reference: str, entries: list[dict[str, Any]], base: str | None) -> list[dict[str, Any]]:
    """The entries a reference names (R4 bundle.html "Resolving references in Bundles"): an absolute one by
    fullUrl; a relative one against the referring entry's base, or by type and id; a versioned one
    (…/_history/n) only the entry of that version."""
    match = LITERAL_REFERENCE.match(reference)
    version = match.group(5)[len("/_history/"):] if match and match.group(5) else None
    plain = reference[: -len(match.group(5))] if match and match.group(5) else reference
    if ABSOLUTE.match(plain):
        found = [e for e in entries if e.get("fullUrl") == plain]
    elif match:
        root = LITERAL_REFERENCE.match(base or "")
        if root and root.group(2):
            found = [e for e in entries if e.get("fullUrl") == root.group(2) + plain]
        else:
            wanted = (match.group(3), match.group(4))
            found = [e for e in entries if isinstance(e.get("resource"), dict)
                     and (e["resource"].get("resourceType"), e["resource"].get("id")) == wanted]
    else:
        return []
    if version is not None:
        found = [e for e in found if ((e.get("resource") or {}).get("meta") or {}).get("versionId") == version]
    return found


def _ends_with_type_and_id(full_url: str, resource: dict[str, Any]) -> bool:
    """Whether `full_url` ends with /type/id of `resource`, so that LITERAL_REFERENCE, if it matches, reads that
    type and id: its id (group 4) is the last segment and its type (group 3) the one before, unless the URL ends
    /_history/v (then the type is not `_history`) or a newline (`$` matches before one, an id has none)."""
    kind, ident = resource.get("resourceType"), resource.get("id")
    return isinstance(kind, str) and isinstance(ident, str) and kind != "_history" and "/" not in kind \
        and "/" not in ident and "\n" not in ident and full_url.endswith(f"/{kind}/{ident}")


def _searched_types(bundle: dict[str, Any]) -> list[str]:
    """The resource types a search set's self link searched (`…/Patient?…` → Patient); none when unclear."""
    for link in as_list(bundle.get("link")):
        if isinstance(link, dict) and link.get("relation") == "self" and isinstance(link.get("url"), str):
            path = link["url"].split("?", 1)[0].rstrip("/")
            last = path.rsplit("/", 1)[-1]
            return [last] if last[:1].isupper() and last.isalpha() else []
    return []
