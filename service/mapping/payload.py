"""The resources a reverse mapping reads (a resource or a Bundle of them) and how references among them resolve."""
from __future__ import annotations

from typing import Any

from service.mapping.transforms import MappingError


class Payload:
    """The resources of a payload, and how references among them resolve."""

    def __init__(self, payload: dict[str, Any], resolve: Any) -> None:
        if not isinstance(payload, dict) or "resourceType" not in payload:
            raise MappingError("expected a FHIR resource or Bundle")
        self.by_url: dict[str, dict[str, Any]] = {}
        if payload["resourceType"] == "Bundle":
            self.resources = []
            for entry in payload.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(resource, dict) and "resourceType" in resource:
                    self.resources.append(resource)
                    if entry.get("fullUrl"):
                        self.by_url[entry["fullUrl"]] = resource
        else:
            self.resources = [payload]
        for resource in self.resources:
            if "id" in resource:
                self.by_url.setdefault(f"{resource['resourceType']}/{resource['id']}", resource)
        self.external = resolve

    def names(self, resource: dict[str, Any]) -> set[str]:
        """Every way a reference in the payload can name `resource`."""
        out = {url for url, r in self.by_url.items() if r is resource}
        if "id" in resource:
            out.add(f"{resource['resourceType']}/{resource['id']}")
        return out

    def resolve(self, ref: Any, origin: dict[str, Any] | None) -> dict[str, Any] | None:
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            return None
        text = ref["reference"]
        if text.startswith("#"):  # a contained resource of the referring one
            inside = origin.get("contained") if isinstance(origin, dict) else None
            return next((r for r in inside if isinstance(r, dict) and r.get("id") == text[1:]), None) \
                if isinstance(inside, list) else None
        if text in self.by_url:
            return self.by_url[text]
        tail = "/".join(text.split("/")[-2:])
        if tail in self.by_url:
            return self.by_url[tail]
        return self.external(text) if self.external else None
