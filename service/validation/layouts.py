"""A list of element plans compiled once into the lookups the walk makes on every object of its type."""
from __future__ import annotations

from service.validation.plan import ElementPlan, TypeRef
from service.validation.primitives import NOT_TEXT, Primitive
from service.validation.values import CODED, TEXT_RULES

#: A JSON name of an element: its position, the element, the type the name implies, and the verdicts remembered
#: for texts of that type when a valid one needs nothing more (plain_text)
Name = tuple[int, ElementPlan, TypeRef | None, dict[str, str | None] | None]
#: Of a list of element plans: JSON name → Name, positions always visited, positions of the elements one value
#: satisfies (no array, no slices, at most one required, at least one allowed).
Layout = tuple[dict[str, Name], frozenset[int], frozenset[int]]


def layout(children: list[ElementPlan], primitives: dict[str, Primitive]) -> Layout:
    """JSON names, and the positions of the elements that must be looked at even when absent (a minimum, or slices
    that may have one) and of those one value satisfies."""
    names = {json_name: (i, child, kind, plain_text(child, kind, primitives)) for i, child in enumerate(children)
             for json_name, kind in child.json_names().items()}
    always = frozenset(i for i, c in enumerate(children) if c.min > 0 or c.slices)
    single = frozenset(i for i, c in enumerate(children) if not c.is_array and not c.slices and c.min <= 1
                       and (c.max is None or c.max >= 1))
    return names, always, single


def plain_text(child: ElementPlan, kind: TypeRef | None,
               primitives: dict[str, Primitive]) -> dict[str, str | None] | None:
    """The verdicts remembered for texts of the primitive type `child` holds as `kind`, when a valid text needs
    nothing more (Values._primitive: no text rule, fixed value, pattern or binding to check)."""
    if kind is None and (child.content_reference or len(child.types) != 1):
        return None
    code = (kind or child.types[0]).code
    primitive = primitives.get(code)
    if primitive is None or code in NOT_TEXT or code in TEXT_RULES or child.fixed or child.pattern \
            or (child.binding and code in CODED):
        return None
    return primitive.seen
