"""Our profile of each resource type, read from the implementation guide in profiles/.

The one source for the CapabilityStatement's supportedProfile, the profile the validator judges a resource
without meta.profile by, and the profiles the CLI validates against: nothing else lists them.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from service.conformance.package import Resource

#: Where our conformance resources live: profiles/package.json's `canonical` (tests/conformance holds them together).
CANONICAL = "https://ketamine-fhir.org/fhir"
STRUCTURES = CANONICAL + "/StructureDefinition/"


@dataclass(frozen=True)
class Profiles:
    """Our resource profiles by the type they constrain, and the categories each requires of a resource."""

    by_type: dict[str, tuple[str, ...]]
    categories: dict[str, frozenset[str]]

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> Profiles:
        """From the StructureDefinitions among `resources` that constrain a resource type (in their order)."""
        by_type: dict[str, list[str]] = {}
        categories: dict[str, frozenset[str]] = {}
        for sd in resources:
            if sd.get("resourceType") == "StructureDefinition" and sd.get("kind") == "resource" \
                    and sd.get("derivation") == "constraint":
                by_type.setdefault(sd["type"], []).append(sd["url"])
                categories[sd["url"]] = _required_categories(sd)
        return cls({t: tuple(urls) for t, urls in by_type.items()}, categories)

    def defaults(self, resource: dict[str, Any]) -> list[str]:
        """The profile a resource that names none is judged by: the one of its type; where a type has several
        (Observation: session monitoring, outcome score), the one whose required category it alone carries."""
        candidates = self.by_type.get(str(resource.get("resourceType")), ())
        if len(candidates) <= 1:
            return list(candidates)
        carried = _categories_of(resource)
        chosen = [url for url in candidates if self.categories[url] and self.categories[url] <= carried]
        return chosen if len(chosen) == 1 else []


@cache
def shipped() -> Profiles:
    """The profiles of the implementation guide the service ships."""
    from service.conformance.definitions import load

    return Profiles.of(load().own.values())


def _required_categories(sd: Resource) -> frozenset[str]:
    """The category codes a required slice of `category` fixes, by pattern or by a fixed coding.code."""
    elements = (sd.get("snapshot") or {}).get("element") or []
    prefix = f"{sd['type']}.category:"
    required = {e["id"] for e in elements
                if e.get("id", "").startswith(prefix) and "." not in e["id"][len(prefix):] and e.get("min", 0) >= 1}
    codes: set[str] = set()
    for e in elements:
        if e.get("id") in required:
            codes |= {c["code"] for c in (e.get("patternCodeableConcept") or {}).get("coding") or [] if "code" in c}
        elif e.get("id", "").removesuffix(".coding.code") in required and "fixedCode" in e:
            codes.add(e["fixedCode"])
    return frozenset(codes)


def _categories_of(resource: dict[str, Any]) -> set[str]:
    """Every code among the resource's categories, whatever its system (as our profiles' slices are told apart)."""
    return {str(c.get("code")) for cat in _list(resource.get("category")) if isinstance(cat, dict)
            for c in _list(cat.get("coding")) if isinstance(c, dict)}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
