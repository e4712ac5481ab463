"""All definitions the service judges by: the R4 core package plus our implementation guide."""
from __future__ import annotations

from functools import cache
from pathlib import Path

from service.conformance.package import Package, Resource, read_folder
from service.resources import core_package_path, profiles_dir

CORE_SD = "http://hl7.org/fhir/StructureDefinition/"


class Definitions:
    """Resolve canonical URLs (and core type names) to resources; ours shadow the core's."""

    def __init__(self, core: Package, own: list[Resource]) -> None:
        self.core = core
        self._core_urls = core.by_url()
        self.own = {r["url"]: r for r in own if "url" in r}

    def resolve(self, url: str) -> Resource | None:
        """The resource a canonical names; `url|version` only when the one held has that version (or none): R4
        canonical references with a version name that version, so another one held is no match."""
        url, _, version = url.partition("|")
        found = self.own.get(url)
        if found is None:
            filename = self._core_urls.get(url)
            found = self.core.get(filename) if filename else None
        if found is not None and version and found.get("version") not in (None, version):
            return None
        return found

    def structure(self, url_or_type: str) -> Resource:
        """A StructureDefinition by canonical URL, or a core type/resource name like `Quantity`."""
        url = url_or_type if "/" in url_or_type else CORE_SD + url_or_type
        found = self.resolve(url)
        if found is None or found.get("resourceType") != "StructureDefinition":
            raise KeyError(f"no StructureDefinition {url_or_type!r}")
        return found

    def with_own(self, own: list[Resource]) -> Definitions:
        return Definitions(self.core, own)


@cache
def core_package() -> Package:
    return Package.from_tgz(core_package_path())


def load(folder: Path | None = None) -> Definitions:
    """The core package and the conformance resources of `folder` (default: the shipped profiles/)."""
    return Definitions(core_package(), read_folder(folder or profiles_dir()))
