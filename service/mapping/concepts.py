"""Local clinic codes ↔ standard codes, through the IG's ConceptMaps.

A mapping names the local code system (`map: domain-route`); every ConceptMap group whose source
is that code system contributes its targets. Forward takes the first usable target. Reverse
accepts a standard code only where the map makes it safe: the target is `equivalent`/`equal` to
the source or `narrower` than it (RxNorm 238084 is a kind of ketamine). A `wider` or `relatedto`
target is a guess in reverse, so forward then also sends the local coding and reverse reads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.conformance.definitions import Definitions
from service.conformance.profiles import CANONICAL

LOCAL_BASE = CANONICAL + "/CodeSystem/"
SAFE_IN_REVERSE = {"equal", "equivalent", "narrower", "specializes"}


class ConceptError(ValueError):
    """A code the concept map does not cover."""


@dataclass(frozen=True)
class Target:
    system: str
    code: str
    display: str | None
    equivalence: str
    comment: str | None

    def coding(self) -> dict[str, Any]:
        out = {"system": self.system, "code": self.code}
        if self.display:
            out["display"] = self.display
        return out


@dataclass(frozen=True)
class Concept:
    code: str
    display: str | None
    targets: tuple[Target, ...]   # first is the one forward sends
    unmatched_reason: str | None


@dataclass(frozen=True)
class LocalSystem:
    """One local code system and everything the concept maps say about its codes."""

    name: str
    url: str
    maps: tuple[str, ...]          # canonical URLs of the ConceptMaps used
    concepts: dict[str, Concept]
    reverse: dict[tuple[str, str], str]

    def forward(self, code: str, system: str | None = None) -> tuple[dict[str, Any] | None, bool]:
        """(standard coding or None, whether the local coding must travel with it).

        `system` picks one target code system where the maps give several (SNOMED CT and ICD-10-CM).
        """
        concept = self.concepts.get(code)
        if concept is None:
            raise ConceptError(f"{self.name}: no mapping for local code {code!r}")
        usable = [t for t in concept.targets if t.equivalence not in ("unmatched", "disjoint")
                  and (system is None or t.system == system)]
        if not usable:
            return None, True
        first = usable[0]
        invertible = first.equivalence in SAFE_IN_REVERSE and self.reverse.get((first.system, first.code)) == code
        return first.coding(), not invertible

    def local_coding(self, code: str) -> dict[str, Any]:
        concept = self.concepts[code]
        out = {"system": self.url, "code": code}
        if concept.display:
            out["display"] = concept.display
        return out

    def back(self, system: str | None, code: str | None) -> str | None:
        """The local code for a coding, or None when this map cannot say."""
        if system == self.url:
            return code if code in self.concepts else None
        return self.reverse.get((system or "", code or ""))


class ConceptIndex:
    def __init__(self, defs: Definitions) -> None:
        self.defs = defs
        self._systems: dict[str, LocalSystem] = {}

    def system(self, name: str) -> LocalSystem:
        if name not in self._systems:
            self._systems[name] = self._build(name)
        return self._systems[name]

    def _build(self, name: str) -> LocalSystem:
        url = LOCAL_BASE + name
        code_system = self.defs.resolve(url)
        if code_system is None:
            raise ConceptError(f"no CodeSystem {url}")
        displays = {c["code"]: c.get("display") for c in code_system.get("concept", [])}
        targets: dict[str, list[Target]] = {code: [] for code in displays}
        unmatched: dict[str, str | None] = {}
        maps: list[str] = []
        for resource in self.defs.own.values():
            if resource.get("resourceType") != "ConceptMap":
                continue
            for group in resource.get("group", []):
                if group.get("source") != url:
                    continue
                if resource["url"] not in maps:
                    maps.append(resource["url"])
                for element in group.get("element", []):
                    for target in element.get("target", []):
                        if target["equivalence"] == "unmatched":
                            unmatched[element["code"]] = target.get("comment")
                            continue
                        targets.setdefault(element["code"], []).append(Target(
                            group["target"], target["code"], target.get("display"), target["equivalence"],
                            target.get("comment")))
        # no map: a code system of our own that is sent as it is (protocol phase, action taken)
        reverse: dict[tuple[str, str], str] = {}
        ambiguous: set[tuple[str, str]] = set()
        for code, found in targets.items():
            for t in found:
                key = (t.system, t.code)
                if t.equivalence not in SAFE_IN_REVERSE:
                    continue
                if key in reverse and reverse[key] != code:
                    ambiguous.add(key)
                reverse[key] = code
        for key in ambiguous:
            del reverse[key]
        concepts = {code: Concept(code, displays.get(code), tuple(found), unmatched.get(code))
                    for code, found in targets.items()}
        return LocalSystem(name, url, tuple(maps), concepts, reverse)
