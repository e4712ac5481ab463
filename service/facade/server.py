"""The FHIR R4 server behind /fhir, with no knowledge of HTTP: its parts put together.

Single-resource interactions (interactions.py), batch and transaction Bundles (bundles.py), search and
history (paging.py), the CapabilityStatement (capability.py); references.py checks what writes refer to.
The web layer (web/fhir_api.py) turns the results into status codes, headers and bodies.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.facade import bundles, paging
from service.facade.bundles import Permits
from service.facade.capability import capability
from service.facade.interactions import AfterWrite, Interactions, Written
from service.facade.policy import Validate
from service.store.resources import Author, ResourceStore, Unit
from service.store.stored import StoredResource


class FhirServer(Interactions):
    """The single-resource interactions, plus Bundles, search, history and the CapabilityStatement."""

    def __init__(self, store: ResourceStore, validate: Validate, max_bundle_entries: int = 300,
                 after_write: AfterWrite | None = None) -> None:
        super().__init__(store, validate, after_write)
        self.max_bundle_entries = max_bundle_entries

    def acting_for(self, author: Author | None, permits: Permits | None = None) -> FhirServer:
        """This server writing on behalf of the API client `author` (each version's Provenance names it), whose
        scopes `permits` answers for where a write reaches past its resource (a clinic record read back)."""
        return FhirServer(self.store.acting_for(author, permits), self.validate, self.max_bundle_entries,
                          self.after_write)

    def search(self, resource_type: str, items: list[tuple[str, str]], base: str, lenient: bool = False,
               can_read: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """`can_read`: an `_include` of a type the caller may not read is refused (typed) or left out (untyped)."""
        self.check_type(resource_type)
        return paging.search(self.store, resource_type, items, base, lenient, can_read)

    def search_json(self, resource_type: str, items: list[tuple[str, str]], base: str, lenient: bool = False,
                    can_read: Callable[[str], bool] | None = None) -> paging.Searchset:
        """search(), as the JSON text json.dumps(ensure_ascii=False) writes, and its outline (paging.search_json)."""
        self.check_type(resource_type)
        return paging.search_json(self.store, resource_type, items, base, lenient, can_read)

    def history(self, base: str, resource_type: str | None = None, resource_id: str | None = None,
                items: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        if resource_type is not None:
            self.check_type(resource_type)
        return paging.history(self.store, base, resource_type, resource_id, items)

    def bundle(self, body: Any, base: str, permits: Permits | None = None) -> dict[str, Any]:
        """A batch or transaction; `permits` checks every entry's interaction (bundles.py)."""
        return bundles.bundle(self, body, base, self.max_bundle_entries, permits)

    def export_record(self, unit: Unit, bundle: dict[str, Any],
                      draft: bundles.ExportDraft | None = None) -> list[StoredResource]:
        """Store the mapped (and already validated) Bundle of the record `unit.record_id` in the caller's
        transaction; `draft`: bundles.draft_export's, of it."""
        return bundles.export_record(unit, bundle, draft)

    @staticmethod
    def capability(base: str) -> dict[str, Any]:
        """The CapabilityStatement of what this server actually does."""
        return capability(base)


__all__ = ["FhirServer", "Written"]
