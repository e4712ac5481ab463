"""Reference checks of the validator: contained targets, Bundle fullUrls, literal forms and target types."""
from __future__ import annotations

import re
from typing import Any

from service.conformance.definitions import Definitions
from service.validation.plan import TypeRef
from service.validation.run import Run

LITERAL_REFERENCE = re.compile(
    r"^((https?://[^?#]*/)?)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")


class References:
    """Mixed into the Validator: Reference.reference against the profile's targetProfile types."""

    defs: Definitions
    _resource_types: set[str]
    _targets: dict[int, tuple[TypeRef, set[str]]]  # by id(): each entry keeps its TypeRef alive

    def _reference(self, value: dict[str, Any], kind: TypeRef, expr: str, run: Run) -> None:
        ref = value.get("reference")
        if not isinstance(ref, str):
            return
        allowed = self._target_types(kind)
        if ref.startswith("#"):
            # `#id` points into the containing resource's `contained`, also from one contained resource to another
            contained = [c.get("id") for holder in [run.root, *run.resources]
                         for c in as_list(holder.get("contained"))
                         if isinstance(c, dict)]
            if ref != "#" and ref[1:] not in contained:
                run.add("error", "structure", f"{expr}.reference", f"Contained resource {ref} is not in this resource.")
            return
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            target = run.full_urls.get(ref)
        else:
            match = LITERAL_REFERENCE.match(ref)
            if match is None:
                # Reference.reference is a string: HAPI, too, only warns about its form.
                if not ref.startswith(("http://", "https://")):
                    run.add("warning", "structure", f"{expr}.reference", f"{ref!r} is not a valid reference.")
                return
            target = match.group(3)
            if target not in self._resource_types:
                run.add("warning", "structure", f"{expr}.reference", f"{target} in {ref!r} is not a resource type.")
                return
        if target and allowed and target not in allowed:
            run.add("error", "structure", f"{expr}.reference",
                    f"The type '{target}' is not valid for this reference: must be {' or '.join(sorted(allowed))}.")

    def _target_types(self, kind: TypeRef) -> set[str]:
        """The resource types a Reference typed `kind` may point to (empty: any); once per TypeRef."""
        known = self._targets.get(id(kind))
        if known is None:
            known = self._targets[id(kind)] = (kind, self._resolve_targets(kind))
        return known[1]

    def _resolve_targets(self, kind: TypeRef) -> set[str]:
        types = set()
        for url in kind.targets:
            sd = self.defs.resolve(url)
            if sd is None or sd.get("type") == "Resource":
                return set()
            types.add(sd["type"])
        return types


def as_list(value: Any) -> list[Any]:
    """`value` when it is a JSON array; anything else (reported elsewhere) counts as none."""
    return value if isinstance(value, list) else []
