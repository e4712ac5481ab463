"""Reference checks of the validator: contained targets, Bundle fullUrls, literal forms and target types."""
from __future__ import annotations

import re
from typing import Any

from service.conformance.definitions import Definitions
from service.validation.plan import TypeRef
from service.validation.run import Run

LITERAL_REFERENCE = re.compile(
    r"^((https?://[^?#]*/)?)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")

REFERENCES_KEPT = 10_000
URNS = ("urn:uuid:", "urn:oid:")  # a Bundle entry's names: resolved by run.full_urls alone
URN = "urn:"  # the place of the reference in a urn: reference's memo key (a literal one's is its text)


class References:
    """Mixed into the Validator: Reference.reference against the profile's targetProfile types."""

    defs: Definitions
    _resource_types: set[str]
    _targets: dict[int, tuple[TypeRef, set[str]]]  # by id(): each entry keeps its TypeRef alive
    #: (target profiles, reference, type) of references found with nothing to say, by a verdict that read neither
    #: the Bundle nor the containing resource
    _references_clean: set[tuple[Any, ...]]

    def _reference(self, value: dict[str, Any], kind: TypeRef, expr: str, run: Run) -> None:
        ref, declared = value.get("reference"), value.get("type")
        # a literal reference found to name an allowed type, with nothing to say: its verdict read nothing but itself;
        # a Bundle's urn: reference, whose verdict reads the type of the entry it names (or none) and no more
        known = None
        if ref.__class__ is str and declared.__class__ in (str, type(None)):
            known = (kind.targets, ref, declared) if not ref.startswith(URNS) \
                else (kind.targets, URN, declared, run.full_urls.get(ref))
            if known in self._references_clean:
                return
        mark = len(run.findings)
        allowed = self._target_types(kind)
        self._declared_type(declared, allowed, expr, run)
        if not isinstance(ref, str):
            return
        if ref.startswith("#"):
            # `#id` points into the containing resource's `contained`, also from one contained resource to another
            contained = [c.get("id") for holder in [run.root, *run.resources]
                         for c in as_list(holder.get("contained"))
                         if isinstance(c, dict)]
            if ref != "#" and ref[1:] not in contained:
                run.add("error", "structure", f"{expr}.reference", f"Contained resource {ref} is not in this resource.")
            return
        if ref.startswith(URNS):
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
        if isinstance(declared, str) and target and declared != target and not declared.startswith(("http:", "https:")):
            # R4 Reference.type: "the type this reference refers to"; HL7: REFERENCE_REF_BADTARGETTYPE, resolved or not
            run.add("error", "structure", f"{expr}.reference",
                    f"The reference is to a {target} but its type says {declared}.")
        if target and allowed and target not in allowed and (
                run.policy.assume_valid_rest_references or ref.startswith(URNS)
                or _in_bundle(ref, run.full_urls)):
            run.add("error", "structure", f"{expr}.reference",
                    f"The type '{target}' is not valid for this reference: must be {' or '.join(sorted(allowed))}.")
        elif known is not None and len(run.findings) == mark and not (target and allowed and target not in allowed):
            if len(self._references_clean) >= REFERENCES_KEPT:  # bounded: references come from input
                self._references_clean.clear()
            self._references_clean.add(known)

    @staticmethod
    def _declared_type(declared: Any, allowed: set[str], expr: str, run: Run) -> None:
        """Reference.type is one of the element's target types, whether the reference resolves or not (R4
        Reference.type: "the expected type of the target"; HL7: REFERENCE_REF_WRONGTARGET). An absolute URL names a
        logical model, which no resource type list decides."""
        if isinstance(declared, str) and allowed and declared not in allowed \
                and not declared.startswith(("http:", "https:")):
            run.add("error", "structure", f"{expr}.type",
                    f"The type '{declared}' is not a valid target for this reference: must be "
                    f"{' or '.join(sorted(allowed))}.")

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


def _in_bundle(ref: str, full_urls: dict[str, str]) -> bool:
    """Whether a literal reference names an entry of the Bundle being validated (its fullUrl, or a fullUrl ending in
    the relative reference): a target the HL7 validator resolves, and so checks the type of."""
    plain = ref.split("/_history/")[0]
    return plain in full_urls or any(url.endswith("/" + plain) for url in full_urls)


def as_list(value: Any) -> list[Any]:
    """`value` when it is a JSON array; anything else (reported elsewhere) counts as none."""
    return value if isinstance(value, list) else []
