"""Slicing in the validator: which slice each repeated item belongs to, by the slicing's discriminators."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.conformance.definitions import Definitions
from service.fhirjson import matches_pattern
from service.validation.bindings import Bindings
from service.validation.plan import ElementPlan, TypeRef
from service.validation.run import Run


class Slicing(Bindings):
    """Mixed into the Validator: slice counts, closed slicing, and the discriminator types R4 defines."""

    defs: Definitions
    _unheld: dict[int, tuple[ElementPlan, list[str | None]]]  # by id(): each entry keeps its plan alive
    _discriminator_values: dict[tuple[int, str], tuple[ElementPlan, tuple[str, Any] | None]]

    if TYPE_CHECKING:
        def _value(self, value: Any, plan: ElementPlan, kind: TypeRef | None, expr: str, run: Run) -> None: ...

    def _slicing(self, sliced: ElementPlan, items: list[tuple[str, TypeRef | None, Any]], expr: str,
                 run: Run) -> None:
        discriminators = (sliced.slicing or {}).get("discriminator", [])
        counts = {s.slice_name: 0 for s in sliced.slices}
        for s, unheld in zip(sliced.slices, self._unheld_profiles(sliced), strict=True):
            # an extension slice whose profile is not held cannot tell its items apart
            for item_expr, _, _ in items if unheld is not None else []:
                run.add("error", "structure", item_expr, f"Slicing cannot be evaluated: the profile {unheld} of "
                                                         f"the slice {sliced.path}:{s.slice_name} is not held.")
        for item_expr, kind, value in items:
            found: dict[str, list[Any]] = {}  # the item's values at each discriminator path, read once for all slices
            chosen = next((s for s in sliced.slices if self._matches(value, kind, s, discriminators, found)), None)
            if chosen is None:
                url = value.get("url") if isinstance(value, dict) else None
                if sliced.path.endswith(".extension") and isinstance(url, str) and ":" not in url:
                    # a complex extension's parts are named by relative urls; only the defined ones exist
                    run.add("error", "structure", item_expr, f"Sub-extension url '{url}' is not defined by this "
                                                             f"extension ({sliced.path}).")
                elif (sliced.slicing or {}).get("rules") == "closed":
                    run.add("error", "structure", item_expr, f"{sliced.path}: this item matches no slice and the "
                                                             f"slicing is closed.")
                continue
            counts[chosen.slice_name] += 1
            self._value(value, chosen, kind if kind and any(t.code == kind.code for t in chosen.types) else None,
                        item_expr, run)
        for s in sliced.slices:
            n = counts[s.slice_name]
            if n < s.min:
                run.add("error", "required", expr, f"{sliced.path}: slice '{s.slice_name}' requires at least {s.min}, "
                                                   f"found {n}.")
            if s.max is not None and n > s.max:
                run.add("error", "structure", expr, f"{sliced.path}: slice '{s.slice_name}' allows at most {s.max}, "
                                                    f"found {n}.")

    def _unheld_profiles(self, sliced: ElementPlan) -> list[str | None]:
        """Per slice, the first profile of its Extension type that is not held (None: all held); once per plan."""
        known = self._unheld.get(id(sliced))
        if known is None:
            known = self._unheld[id(sliced)] = (sliced, [next((p for t in s.types if t.code == "Extension"
                                                               for p in t.profiles[:1] if self.defs.resolve(p) is None),
                                                              None) for s in sliced.slices])
        return known[1]

    def _matches(self, value: Any, kind: TypeRef | None, slice_: ElementPlan, discriminators: list[dict[str, Any]],
                 found: dict[str, list[Any]]) -> bool:
        for d in discriminators:
            path, how = d.get("path", "$this"), d.get("type")
            if how == "type":
                if kind is None or kind.code not in {t.code for t in slice_.types}:
                    return False
                continue
            if how == "profile":
                if not isinstance(value, dict) or not slice_.types or not slice_.types[0].profiles:
                    return False
                probe = Run(value)
                self._value(value, slice_, slice_.types[0], "$slice", probe)
                if any(f.severity in ("error", "fatal") for f in probe.findings):
                    return False
                continue
            actual = found.get(path)
            if actual is None:
                actual = found[path] = navigate(value, path)
            if how == "exists":
                target = find_child(slice_, path)
                wanted = target is not None and target.min > 0
                if bool(actual) != wanted:
                    return False
                continue
            known = self._discriminator_values.get((id(slice_), path))
            if known is None:  # a slice's value at a path is its plan's: found once (the entry keeps the plan alive)
                known = self._discriminator_values[id(slice_), path] = (slice_, self._discriminator_value(slice_, path))
            expected = known[1]
            if expected is None:
                return False
            mode, wanted_value = expected
            if mode == "valueset":
                if not any(self._member(v, wanted_value) for v in actual):
                    return False
            elif not any((v == wanted_value) if mode == "fixed" else matches_pattern(v, wanted_value) for v in actual):
                return False
        return True

    def _discriminator_value(self, slice_: ElementPlan, path: str) -> tuple[str, Any] | None:
        if path == "url" and slice_.types and slice_.types[0].code == "Extension" and slice_.types[0].profiles:
            return ("fixed", slice_.types[0].profiles[0])
        for target in [slice_] if path == "$this" else find_targets(slice_, path):
            if target.fixed:
                return ("fixed", target.fixed[1])
            if target.pattern:
                return ("pattern", target.pattern[1])
            binding = target.binding or {}
            if binding.get("strength") == "required" and binding.get("valueSet"):
                return ("valueset", binding["valueSet"])  # R4 allows a discriminator on a required binding
        return None


def navigate(value: Any, path: str) -> list[Any]:
    nodes = [value]
    if path != "$this":
        for step in path.split("."):
            step = step.removesuffix("[x]")
            nxt: list[Any] = []
            for node in nodes:
                if isinstance(node, dict):
                    found = node.get(step)
                    nxt.extend(found if isinstance(found, list) else [found] if found is not None else [])
            nodes = nxt
    return nodes


def find_targets(plan: ElementPlan, path: str) -> list[ElementPlan]:
    """The elements `path` reaches from `plan`, through the slices of a sliced element too: R4's bp profile
    slices component by `code.coding.code`, whose value is fixed only in the slice `code.coding:SBPCode`."""
    nodes = [plan]
    for step in path.split("."):
        children = [c for n in nodes for c in n.children if c.name == step.removesuffix("[x]")]
        nodes = [*children, *(s for c in children for s in c.slices)]
    return nodes


def find_child(plan: ElementPlan, path: str) -> ElementPlan | None:
    node: ElementPlan | None = plan
    for step in path.split("."):
        if node is None:
            return None
        node = next((c for c in node.children if c.name == step.removesuffix("[x]")), None)
    return node
