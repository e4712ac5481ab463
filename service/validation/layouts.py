"""A list of element plans compiled once into the lookups the walk makes on every object of its type."""
from __future__ import annotations

from service.validation.bindings import VITALS_UNITS
from service.validation.plan import ElementPlan, TypeRef
from service.validation.primitives import NOT_TEXT, Primitive

#: Elements whose every text names one thing (each entry of a Bundle has its own fullUrl): remembered as clean, they
#: would never be met again, and a Bundle of more than CLEAN_MAX entries would empty the set over and over for
#: nothing; the walk checks them outright instead (walkers._plain)
IDENTITIES = frozenset({"Bundle.entry.fullUrl"})
#: A JSON name of an element: its position, the element, the type the name implies, and the texts found with
#: nothing to say there when that depends on the text alone (clean_texts)
Name = tuple[int, ElementPlan, TypeRef | None, set[str] | None]
#: Of a list of element plans: JSON name → Name, positions always visited, positions of the elements one value
#: satisfies (no array, no slices, at most one required, at least one allowed).
Layout = tuple[dict[str, Name], frozenset[int], frozenset[int]]


def layout(children: list[ElementPlan], primitives: dict[str, Primitive]) -> Layout:
    """JSON names, and the positions of the elements that must be looked at even when absent (a minimum, or slices
    that may have one) and of those one value satisfies."""
    names = {json_name: (i, child, kind, clean_texts(child, kind, primitives)) for i, child in enumerate(children)
             for json_name, kind in child.json_names().items()}
    always = frozenset(i for i, c in enumerate(children) if c.min > 0 or c.slices)
    single = frozenset(i for i, c in enumerate(children) if not c.is_array and not c.slices and c.min <= 1
                       and (c.max is None or c.max >= 1))
    return names, always, single


def clean_texts(child: ElementPlan, kind: TypeRef | None, primitives: dict[str, Primitive]) -> set[str] | None:
    """A set for the texts found with nothing to say as `child` typed `kind`, when that answer depends on the text
    alone (Values._primitive): a primitive type read from a JSON string, but not a canonical (the policy's example
    URLs), xhtml (the resource's contained ids) or the vital signs' units binding (the profile's origin). Texts
    found so without a terminology server need none: the server is only asked what the offline answer warns of."""
    if kind is None and (child.content_reference or len(child.types) != 1):
        return None
    code = (kind or child.types[0]).code
    if code not in primitives or code in NOT_TEXT or code in ("canonical", "xhtml") \
            or (child.binding or {}).get("valueSet") == VITALS_UNITS or child.path in IDENTITIES:
        return None
    return set()


def remember_clean(texts: set[str], value: str) -> None:
    if len(value) <= CLEAN_LENGTH:
        if len(texts) >= CLEAN_MAX:  # bounded: a long-running service meets endless distinct texts
            texts.clear()
        texts.add(value)


CLEAN_LENGTH, CLEAN_MAX = 128, 64  # per element and type: at most 64 texts of at most 128 characters
