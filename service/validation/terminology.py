"""Value sets expanded offline: extensional lists, whole local/core code systems, imports, exclusions."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from service.conformance.definitions import Definitions

Code = tuple[str, str]  # (system, code)


@dataclass
class Expansion:
    """The codes of a value set with their displays; `complete` is False when some part could not be
    expanded here (a filter, or a code system we do not hold, like SNOMED CT or LOINC)."""

    codes: dict[Code, str | None] = field(default_factory=dict)
    complete: bool = True
    systems_unknown: set[str] = field(default_factory=set)


class Terminology:
    def __init__(self, defs: Definitions) -> None:
        self.defs = defs
        self._cache: dict[str, Expansion] = {}
        self._pending: dict[str, Expansion] = {}  # being expanded by the thread holding the lock
        self._lock = threading.RLock()  # re-entered by imports of value sets
        self._indexes: dict[str, tuple[dict[str, str | None], bool] | None] = {}
        self._displays: dict[str, dict[str, tuple[str, frozenset[str]]]] = {}

    def expand(self, url: str) -> Expansion | None:
        """None when the value set itself is unknown. Thread-safe: web workers validate in threads, and a value
        set being expanded must never be seen half done (an empty expansion refused every code, found by
        tests/facade/test_server.py's eight concurrent first records)."""
        url = url.split("|", 1)[0]
        found = self._cache.get(url)
        if found is not None:
            return found
        with self._lock:
            found = self._cache.get(url) or self._pending.get(url)
            if found is not None:
                return found
            vs = self.defs.resolve(url)
            if vs is None or vs.get("resourceType") != "ValueSet":
                return None
            self._pending[url] = Expansion()  # what an import cycle back to this value set sees
            try:
                self._cache[url] = self._expand(vs)
            finally:
                del self._pending[url]
            return self._cache[url]

    def display(self, system: str, code: str) -> str | None:
        index = self._index(system)
        return index[0].get(code) if index else None

    def complete_codes(self, system: str) -> dict[str, str | None] | None:
        """code → display of a code system we hold completely (content = complete), else None."""
        index = self._index(system)
        return index[0] if index and index[1] else None

    def displays(self, system: str, code: str) -> tuple[str, frozenset[str]] | None:
        """A code of a code system we hold completely: its display and every display it accepts (its designations
        too), casefolded; None when the system is not held completely or the code has no display."""
        if self.complete_codes(system) is None:
            return None
        known = self._displays.get(system)
        if known is None:
            cs = self.defs.resolve(system) or {}
            known = self._displays[system] = _displays(cs.get("concept", []))
        return known.get(code)

    def _index(self, system: str) -> tuple[dict[str, str | None], bool] | None:
        """The code system's concepts, nested ones included, flattened once per system."""
        if system not in self._indexes:
            cs = self.defs.resolve(system)
            self._indexes[system] = None if cs is None or cs.get("resourceType") != "CodeSystem" else (
                _concepts(cs.get("concept", [])), cs.get("content") == "complete")
        return self._indexes[system]

    def _expand(self, vs: dict[str, Any]) -> Expansion:
        compose = vs.get("compose")
        if compose is None:
            out = Expansion()
            for c in vs.get("expansion", {}).get("contains", []):
                out.codes[(c["system"], c["code"])] = c.get("display")
            out.complete = "expansion" in vs
            return out
        out = Expansion()
        for include in compose.get("include", []):
            self._include(include, out)
        for exclude in compose.get("exclude", []):
            removed = Expansion()
            self._include(exclude, removed)
            for key in removed.codes:
                out.codes.pop(key, None)
        return out

    def _include(self, include: dict[str, Any], out: Expansion) -> None:
        for imported in include.get("valueSet", []):
            sub = self.expand(imported)
            if sub is None:
                out.complete = False
                continue
            out.codes.update(sub.codes)
            out.complete &= sub.complete
            out.systems_unknown |= sub.systems_unknown
        system = include.get("system")
        if system is None:
            return
        if "concept" in include:
            for c in include["concept"]:
                out.codes[(system, c["code"])] = c.get("display") or self.display(system, c["code"])
            return
        cs = self.defs.resolve(system)
        if include.get("filter") or cs is None or cs.get("content") != "complete":
            out.complete = False
            out.systems_unknown.add(system)
            return
        for code, display in _concepts(cs.get("concept", [])).items():
            out.codes[(system, code)] = display


def _concepts(concepts: list[dict[str, Any]]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for c in concepts:
        out[c["code"]] = c.get("display")
        out.update(_concepts(c.get("concept", [])))
    return out


def _displays(concepts: list[dict[str, Any]]) -> dict[str, tuple[str, frozenset[str]]]:
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for c in concepts:
        given = [c.get("display"), *(d.get("value") for d in c.get("designation", []) if isinstance(d, dict))]
        names = [n for n in given if isinstance(n, str)]
        if names:
            out[c["code"]] = (names[0], frozenset(n.casefold() for n in names))
        out.update(_displays(c.get("concept", [])))
    return out
