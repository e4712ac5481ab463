"""Slicing in the validator: which slice each repeated item belongs to, by the slicing's discriminators."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.conformance.definitions import Definitions
from service.validation.bindings import Bindings, remember
from service.validation.coded import FREEZE, PARTS, coded_key
from service.validation.patterns import remembered
from service.validation.plan import ElementPlan, StructurePlan, TypeRef
from service.validation.run import Run

#: the last member of _sliced_element's memo key: the items walked against the element too, not only sliced
WALKED = "walked"
SCALARS = (str, int, float, bool)  # a primitive's JSON value, by its class (True == 1: the class is in the key)
RECURRING = frozenset({"valueCode", "valueBoolean"})  # extension values whose whole walk is remembered (_recurs)


class Slicing(Bindings):
    """Mixed into the Validator: slice counts, closed slicing, and the discriminator types R4 defines."""

    defs: Definitions
    _unheld: dict[int, tuple[ElementPlan, list[str | None]]]  # by id(): each entry keeps its plan alive
    _discriminator_values: dict[tuple[int, str], tuple[ElementPlan, tuple[str, Any] | None]]
    #: (slice, type, policy, profile, codes) walked with nothing found (_coded_key), and the like of sliced elements
    #: (_sliced_key, _sliced_element); bounded as bindings.remember
    _coded_clean: set[tuple[Any, ...]]
    _free_slices: dict[int, tuple[ElementPlan, bool]]  # by id(): each entry keeps its plan alive
    _free_extensions: dict[int, tuple[ElementPlan, bool, frozenset[Any]]]  # as _free_slices: _extensions_found

    if TYPE_CHECKING:
        def _value(self, value: Any, plan: ElementPlan, kind: TypeRef | None, expr: str, run: Run) -> None: ...

        def _type_plan(self, kind: TypeRef) -> StructurePlan: ...

        def _extension_definition(self, url: str) -> tuple[dict[str, Any] | None, StructurePlan | None]: ...

    def _sliced_element(self, sliced: ElementPlan, items: list[tuple[str, TypeRef | None, Any]], expr: str,
                        run: Run) -> None:
        """Validator._element's part for a sliced element: each item walked against the element, then sliced. Plain
        coded items (_sliced_key) walked and sliced here before with nothing found, in a like run, are passed over
        whole when the element's own walk of them depends on their codes alone too (_context_free, as the walk's
        coded memo asks): a category slicing (vital signs' VSCat) meets the same codes in every resource."""
        if not items:  # nothing to walk or match: _slice_items would only find each slice empty
            self._slice_counts(sliced, {}, expr, run)
            return
        memo = self._sliced_key(sliced, items, run)
        code = memo[0][1] if memo is not None else None
        whole = (*memo, WALKED) if memo is not None and (
            code in FREEZE and self._context_free(sliced, code) or code == "Extension" and self._recurs(sliced, memo)) \
            else None
        if whole is not None and whole in self._coded_clean:
            return
        mark = len(run.findings)
        run.sliced += 1
        for item_expr, kind, value in items:
            self._value(value, sliced, kind, item_expr, run)
        if memo is None or memo not in self._coded_clean:  # these codes were sliced here before, with nothing found
            sliced_mark = len(run.findings)
            self._slice_items(sliced, items, expr, run)
            if memo is not None and len(run.findings) == sliced_mark:
                remember(self._coded_clean, memo)
        run.sliced -= 1
        if whole is not None and len(run.findings) == mark:
            remember(self._coded_clean, whole)

    def _sliced_key(self, sliced: ElementPlan, items: list[tuple[str, TypeRef | None, Any]],
                    run: Run) -> tuple[Any, ...] | None:
        """What the findings of slicing coded items depend on, when that is all (None otherwise): every item a plain
        Coding or CodeableConcept (coded.coded_key) of one type, every slice of that type and context-free
        (_context_free), so which slice each item matches, and its walk against it, follow from its codes alone. A
        category slicing (vital signs' VSCat) meets the same codes in every resource."""
        if not items or not sliced.slices:
            return None
        if sliced.path.endswith(".extension"):
            return self._extensions_key(sliced, items, run)
        kind = items[0][1]  # None: the element's one type (it has several only as a choice, whose names say it)
        typed = kind if kind is not None else sliced.types[0] if len(sliced.types) == 1 else None
        code = typed.code if typed is not None and not typed.profiles else None
        if code not in FREEZE:
            return None
        for _, other, _ in items:  # a loop, not any() over a generator: per sliced element of every resource
            if other is not kind:
                return None
        for s in sliced.slices:
            if len(s.types) != 1 or s.types[0].code != code or s.types[0].profiles or not self._context_free(s, code):
                return None
        keys = []
        for _, _, value in items:
            key = coded_key((id(sliced), code), value, run)
            if key is None:
                return None
            keys.append(key[3])
        return (id(sliced), code, kind is None), run.policy, run.plans[-1].url if run.plans else None, tuple(keys)

    def _extensions_key(self, sliced: ElementPlan, items: list[tuple[str, TypeRef | None, Any]],
                        run: Run) -> tuple[Any, ...] | None:
        """_sliced_key for extensions: every item a url and one primitive value[x] or a valueQuantity of primitives
        (no id, no nested extension, no reference, whose verdict would depend on the Bundle), every slice an
        Extension profiled by a definition that is held, and no constraint of theirs reading an environment variable
        (_extensions_free): the findings then follow from the urls and values, the element they sit on and its types
        (the context check, run.owner_types) alone. A session's timepoint, number or dose per kg recurs."""
        if run.policy.tx_server or run.must_support or not self._extensions_free(sliced):
            return None
        kind = items[0][1]  # the element's type, Extension (None only for an element of several types)
        if kind is None or kind.code != "Extension" or kind.profiles:
            return None
        keys = []
        for _, typed, value in items:
            if typed is not kind or value.__class__ is not dict or len(value) != 2:
                return None
            first, second = value  # its two members: the url and the other (a loop, not next() over a generator)
            url, name = value.get("url"), second if first == "url" else first
            held = value[name] if name.startswith("value") else None
            if held.__class__ is dict and name == "valueQuantity" and "id" not in held \
                    and all(v.__class__ in SCALARS for v in held.values()):
                held = tuple((k, v.__class__, v) for k, v in held.items())  # in its order: findings follow it
            elif held.__class__ not in SCALARS:
                return None
            if url.__class__ is not str:
                return None
            keys.append((url, name, held.__class__, held))
        return ((id(sliced), "Extension"), run.policy, run.plans[-1].url if run.plans else None, run.owner_types,
                run.primitive_owner, tuple(keys))

    def _extensions_free(self, sliced: ElementPlan) -> bool:
        """Every slice of `sliced` an Extension of one held definition, no constraint of the slices or definitions
        (their elements and slices, all the way down) reading %resource or the like. Found once per element."""
        return self._extensions_found(sliced)[1]

    def _extensions_found(self, sliced: ElementPlan) -> tuple[ElementPlan, bool, frozenset[Any]]:
        """What _extensions_free and _recurs know of `sliced`: whether it is free, and its slices' urls."""
        known = self._free_extensions.get(id(sliced))
        if known is None:
            todo, free = [sliced], len(sliced.types) == 1 and sliced.types[0].code == "Extension"
            if free:  # the base Extension's own rules, which the walk of an item against the element meets too
                todo.append(self._type_plan(sliced.types[0]).root)
            urls = []
            for s in sliced.slices:
                kind = s.types[0] if len(s.types) == 1 else None
                plan = self._extension_definition(kind.profiles[0])[1] \
                    if kind is not None and kind.code == "Extension" and len(kind.profiles) == 1 else None
                free = free and plan is not None
                todo += [s, plan.root] if plan is not None else [s]
                urls += [kind.profiles[0]] if plan is not None and kind is not None else []
            while free and todo:
                element = todo.pop()
                free = not any("%" in c.expression for c in element.constraints)
                todo += element.children + element.slices
            known = self._free_extensions[id(sliced)] = (sliced, free, frozenset(urls))
        return known

    def _recurs(self, sliced: ElementPlan, memo: tuple[Any, ...]) -> bool:
        """Extensions (an _extensions_key) whose walk against the element, as well as their slicing, is remembered
        with it: each is one of the slices' (whose definitions _extensions_free found free of %resource and the
        like, so the walk reads the url, the value and the key's context alone) with a code or a boolean, the few
        values such an extension takes in every record (a session's timepoint, an escort at discharge). A number or
        a quantity (a session's number, a dose per kg) is a patient's own: walked each time."""
        urls = self._extensions_found(sliced)[2]
        for url, name, _, _ in memo[-1]:  # noqa: SIM110 - a loop, not all() over a generator: on every extension list
            if name not in RECURRING or url not in urls:
                return False
        return True

    def _slice_items(self, sliced: ElementPlan, items: list[tuple[str, TypeRef | None, Any]], expr: str,
                     run: Run) -> None:
        discriminators = (sliced.slicing or {}).get("discriminator", [])
        counts: dict[str | None, int] = {s.slice_name: 0 for s in sliced.slices}
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
            typed = kind if kind and any(t.code == kind.code for t in chosen.types) else None
            memo = self._coded_key(value, chosen, typed, run)
            if memo is not None and memo in self._coded_clean:
                continue  # these codes were walked against this slice before, in a like run, with nothing found
            mark = len(run.findings)
            self._value(value, chosen, typed, item_expr, run)
            if memo is not None and len(run.findings) == mark:
                remember(self._coded_clean, memo)
        self._slice_counts(sliced, counts, expr, run)

    @staticmethod
    def _slice_counts(sliced: ElementPlan, counts: dict[str | None, int], expr: str, run: Run) -> None:
        """Each slice's items (by name; none when absent) against its cardinality."""
        for s in sliced.slices:
            n = counts.get(s.slice_name, 0)
            if n < s.min:
                run.add("error", "required", expr, f"{sliced.path}: slice '{s.slice_name}' requires at least {s.min}, "
                                                   f"found {n}.")
            if s.max is not None and n > s.max:
                run.add("error", "structure", expr, f"{sliced.path}: slice '{s.slice_name}' allows at most {s.max}, "
                                                    f"found {n}.")

    def _coded_key(self, value: Any, slice_: ElementPlan, kind: TypeRef | None, run: Run) -> tuple[Any, ...] | None:
        """What the findings of walking a Coding or CodeableConcept against its slice depend on (coded.coded_key),
        when that is all they depend on (None otherwise): the value holds nothing but codings (system, version,
        code, display, userSelected) and a text, so no id, extension or reference whose verdict depends on the rest
        of the resource, and no constraint it meets reads %resource or the like (_context_free). Codes repeat from
        resource to resource (a category, a diagnosis), so the slice's second walk of the same codes is done once
        (bounded, as bindings.remember)."""
        types = slice_.types if kind is None else (kind,)
        code = types[0].code if len(types) == 1 and not types[0].profiles else None
        if code not in FREEZE or not self._context_free(slice_, code):
            return None
        return coded_key((id(slice_), code), value, run)

    def _context_free(self, slice_: ElementPlan, code: str) -> bool:
        """No constraint on the element (a slice, or any element typed Coding, CodeableConcept or Meta), on the parts
        a plain coded value or meta has (its codings' members, their slices) or on their types reads an environment
        variable (%resource, %rootResource …): their answers depend on the value alone. Found once per element."""
        known = self._free_slices.get(id(slice_))
        if known is None:
            plans, seen = [], set()
            todo: list[tuple[ElementPlan, str | None]] = [(slice_, code)]
            while todo:
                element, kind = todo.pop()
                if id(element) in seen:
                    continue
                seen.add(id(element))
                plans.append(element)
                parts = element.children + [s for c in element.children for s in c.slices] + element.slices
                if kind in ("CodeableConcept", "Coding", "Meta"):
                    root = self._type_plan(TypeRef(kind)).root
                    plans.append(root)
                    parts += root.children
                todo += [(c, c.types[0].code if len(c.types) == 1 else None) for c in parts if c.name in PARTS]
            free = not any("%" in c.expression for p in plans for c in p.constraints)
            known = self._free_slices[id(slice_)] = (slice_, free)
        return known[1]

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
            elif mode == "pattern":
                if not any(map(remembered(wanted_value), actual)):
                    return False
            elif not any(v == wanted_value for v in actual):
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
