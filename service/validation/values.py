"""Rules on one value of the walk: primitive formats, fixed and pattern values, invariants, extensions."""
from __future__ import annotations

import re
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from service.conformance.definitions import CORE_SD, Definitions
from service.validation.bindings import Bindings
from service.validation.ig_invariants import Native
from service.validation.invariants import FAST, GUARDS, NATIVE, PLAIN, Fast, InvariantError, Invariants
from service.validation.narrative import check_narrative
from service.validation.patterns import remembered
from service.validation.plan import Constraint, ElementPlan, StructurePlan, TypeRef, UnknownProfile
from service.validation.primitives import Primitive
from service.validation.run import Run
from service.validation.urls import is_example_url

ADDRESS = re.compile(r" at 0x[0-9a-f]+")  # object addresses differ between runs; findings must not
ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CODED = {"code", "string", "uri", "Coding", "CodeableConcept", "Quantity"}
TEXT_RULES = {"uri", "url", "canonical", "uuid", "xhtml"}  # the types _text_rules has rules for
DEFINITIONS_KEPT = 10_000  # extension urls whose definition is remembered
#: a tuple of constraints as _constraints asks them: (guard, ((rule, its FAST path, its PLAIN one), ...)) runs
RuleGroups = tuple[tuple[frozenset[str] | None, tuple[tuple[Constraint, Fast | None, Native | None], ...]], ...]
ID_CHARACTERS = re.compile(r"[A-Za-z0-9\-.]{65,}")


class Values(Bindings):
    """Mixed into the Validator: what is checked of a value once the walk has reached it and knows its type."""

    defs: Definitions
    primitives: dict[str, Primitive]
    invariants: Invariants
    #: url → what it resolves to and its plan, when a usable Extension definition (_extension_definition)
    _extension_definitions: dict[str, tuple[dict[str, Any] | None, StructurePlan | None]]
    #: (extension definition url, owner element, owner types) where that extension may sit (_extension_context)
    _contexts_allowed: set[tuple[Any, ...]]
    #: id() of a tuple of constraints → its rule groups (_group_rules); the tuples kept alive in _rule_keys
    _rule_groups: dict[int, RuleGroups]
    _rule_keys: list[tuple[Constraint, ...]]

    if TYPE_CHECKING:
        def plan(self, url: str) -> StructurePlan: ...

        def _object(self, obj: dict[str, Any], children: list[ElementPlan], expr: str, run: Run,
                    resource: bool = False) -> None: ...

    def _primitive(self, value: Any, plan: ElementPlan, kind: TypeRef, expr: str, run: Run) -> None:
        code = kind.code
        primitive = self.primitives.get(code)
        if primitive is None:  # System.String etc.: the `value` of a primitive type's own definition
            return
        problem = primitive.check(value)
        if problem and code == "id" and _long_contained_id(value, expr, run):
            run.add("warning", "value", expr, f"The contained resource's id {value!r} is longer than 64 characters.")
        elif problem:
            run.add("error", "value", expr, f"{_shown(value)} {problem} ({code}).")
            return
        if code in TEXT_RULES:
            self._text_rules(value, code, expr, run)
        if plan.fixed or plan.pattern:
            self._fixed_and_pattern(value, plan, expr, run)
        if plan.binding and code in CODED:
            self._binding(value, code, plan, expr, run)

    def _text_rules(self, value: str, code: str, expr: str, run: Run) -> None:
        """What the regexes of uri, url, canonical, uuid and xhtml leave unchecked."""
        if code in ("uri", "url", "canonical", "uuid") and value.startswith("urn:uuid:") and not UUID.fullmatch(value):
            run.add("error", "value", expr, f"UUIDs are lowercase hexadecimal in the form 8-4-4-4-12 (R4 uuid, RFC "
                                            f"4122): {value}.")
        if code == "canonical" and not value.startswith("#") and not ABSOLUTE.match(value):
            run.add("error", "value", expr, f"Canonical URLs must be absolute unless they are fragment references "
                                            f"({value}).")
        if code == "canonical" and not run.policy.allow_example_urls and is_example_url(value) \
                and self.defs.resolve(value) is None:
            run.add("error", "invalid", expr, f"Example URLs are not allowed in this context ({value}).")
        if code == "xhtml":
            check_narrative(value, expr, run)

    def _fixed_and_pattern(self, value: Any, plan: ElementPlan, expr: str, run: Run) -> None:
        if plan.fixed and value != plan.fixed[1]:
            run.add("error", "value", expr, f"{plan.path}: value must be exactly {plan.fixed[1]!r} ({plan.fixed[0]}).")
        if plan.pattern and not remembered(plan.pattern[1])(value):
            run.add("error", "value", expr, f"{plan.path}: value must match the pattern {plan.pattern[1]!r}.")

    def _constraints(self, node: Any, constraints: tuple[Constraint, ...], base: str, expr: str, run: Run,
                     where: str) -> None:
        groups = self._rule_groups.get(id(constraints))
        if groups is None:
            groups = self._group_rules(constraints)
        resource = run.resources[-1] if run.resources else run.root
        root = run.roots[-1] if run.roots else run.root
        plain = type(node) is dict
        for guard, rules in groups:
            if guard is not None and plain and guard.isdisjoint(node):
                continue  # each rule of the run holds: what Invariants.holds answers first
            for rule, fast, native in rules:
                try:  # the FAST path, then the PLAIN one, as holds asks them next; holds itself when they defer
                    answer = fast(node, root) if fast is not None else None
                    if answer is not None:
                        ok = bool(answer)
                    elif native is not None and plain:
                        try:
                            ok = native(node, base, resource)
                        except InvariantError:
                            raise
                        except Exception:  # noqa: BLE001 - NotPlain (or any surprise): holds goes on from there
                            ok = self.invariants.holds(rule.expression, node, base, resource, root)
                    else:
                        ok = self.invariants.holds(rule.expression, node, base, resource, root)
                except InvariantError as exc:
                    run.add("information", "informational", expr, f"Invariant {rule.key} could not be evaluated: "
                                                                   f"{ADDRESS.sub('', str(exc))}")
                    continue
                if not ok:
                    severity = "error" if rule.severity == "error" else "warning"
                    source = f" (defined in {rule.source})" if rule.source else ""
                    run.add(severity, "invariant", expr, f"Constraint failed: {rule.key}: '{rule.human}'{source}")

    def _group_rules(self, constraints: tuple[Constraint, ...]) -> RuleGroups:
        """The rules Invariants.holds answers, in their order, in runs of those with the same guard (GUARDS): the
        four rules on `contained` every resource has are passed over by one test of a resource without it. Kept by
        id() with the tuple itself, so an id is never reused while kept (plans and steps keep theirs anyway)."""
        groups: list[tuple[frozenset[str] | None, list[tuple[Constraint, Fast | None, Native | None]]]] = []
        for rule in constraints:
            if rule.key in NATIVE:
                continue
            guard, ways = GUARDS.get(rule.expression), (rule, FAST.get(rule.expression), PLAIN.get(rule.expression))
            if groups and groups[-1][0] == guard:
                groups[-1][1].append(ways)
            else:
                groups.append((guard, [ways]))
        found = tuple((guard, tuple(rules)) for guard, rules in groups)
        self._rule_groups[id(constraints)] = found
        self._rule_keys.append(constraints)
        return found

    def _clean_against_definition(self, value: dict[str, Any], expr: str, run: Run) -> bool:
        """Walks an extension against the definition its url names, when _extension would: True when that finds
        nothing. Otherwise its findings are dropped and False returned, so that the walk against the base Extension
        comes first and the findings keep their order."""
        extension_plan = self._definition_plan(value.get("url"))
        if extension_plan is None:
            return False
        mark = len(run.findings)
        self._object(value, extension_plan.root.children, expr, run)
        if len(run.findings) == mark:
            run.clean.add((id(value), id(extension_plan.root.children)))
            return True
        del run.findings[mark:]
        return False

    def _definition_plan(self, url: Any) -> StructurePlan | None:
        """The plan of the Extension definition an absolute `url` names, when it is held and usable."""
        if not isinstance(url, str) or ":" not in url:
            return None
        return self._extension_definition(url)[1]

    def _extension_definition(self, url: str) -> tuple[dict[str, Any] | None, StructurePlan | None]:
        """What `url` resolves to, and its plan when that is a usable Extension definition: found once a url, as
        the definitions held do not change (bounded, as urls come from input)."""
        known = self._extension_definitions.get(url)
        if known is None:
            definition = self.defs.resolve(url)
            plan = None
            if definition is not None and definition.get("type") == "Extension":
                with suppress(UnknownProfile):  # held, but no snapshot could be had: as unusable as one not held
                    plan = self.plan(definition["url"])
            if len(self._extension_definitions) >= DEFINITIONS_KEPT:
                self._extension_definitions.clear()
            known = self._extension_definitions[url] = (definition, plan)
        return known

    def _extension(self, value: dict[str, Any], plan: ElementPlan, kind: TypeRef, expr: str, run: Run,
                   walked: bool = False) -> None:
        """`walked`: already walked against its definition, with no finding (_clean_against_definition)."""
        has_value = False  # a value[x], or an extended primitive's `_value[x]` (a loop: on every extension)
        for k in value:
            if k.startswith(("value", "_value")):
                has_value = True
                break
        if has_value == bool(value.get("extension")):  # ext-1, checked natively
            run.add("error", "invariant", expr, "Constraint failed: ext-1: 'Must have either extensions or value[x], "
                                                "not both'")
        url = value.get("url")
        if not isinstance(url, str):
            return  # a missing url is a cardinality error already
        if ":" not in url:
            return  # a complex extension's part, named relative to it: its slicing says whether it is defined
        definition = self._extension_definition(kind.profiles[0] if kind.profiles else url)[0]
        if definition is not None and definition.get("type") == "Extension":
            self._extension_context(definition, plan, expr, run)
        if kind.profiles:  # a profiled slice was validated against its definition, if it is held
            if definition is None:
                severity = run.policy.extension_severity(url)
                if severity != "ignore":
                    run.add(severity, "extension", expr, f"Unknown extension {url}: the profile's slice names "
                                                         f"{kind.profiles[0]}, which is not held.")
            return
        extension_plan = self._definition_plan(url)
        if extension_plan is None:
            severity = run.policy.extension_severity(url)
            if severity != "ignore":
                run.add(severity, "extension", expr, f"Unknown extension {url}.")
            return
        if not walked:
            self._object(value, extension_plan.root.children, expr, run)
        self._constraints(value, extension_plan.root.constraints, "Extension", expr, run, url)

    def _extension_context(self, definition: dict[str, Any], plan: ElementPlan, expr: str, run: Run) -> None:
        """An extension may sit only where its definition's context says."""
        owner = run.primitive_owner or plan.path.rsplit(".", 1)[0]
        place = (definition["url"], owner, run.owner_types)  # all the verdict reads: remembered when allowed
        if place in self._contexts_allowed:
            return
        names = {owner, "Element", "Resource", "DomainResource", *run.owner_types}
        if "." not in owner:
            names.add(owner)
        allowed = [c.get("expression") for c in definition.get("context", []) if c.get("type") == "element"]
        if not allowed or any(a in names for a in allowed):
            if len(self._contexts_allowed) >= DEFINITIONS_KEPT:
                self._contexts_allowed.clear()
            self._contexts_allowed.add(place)
            return
        # R4's own extensions are used beyond their declared contexts by R4's own examples; HAPI lets that pass.
        severity = "warning" if definition["url"].startswith(CORE_SD) else "error"
        run.add(severity, "structure", expr, f"Extension {definition['url']} is not allowed on {owner}: its context "
                                            f"is {', '.join(str(a) for a in allowed)}.")

def _long_contained_id(value: Any, expr: str, run: Run) -> bool:
    """A contained resource's own id, of id characters but over 64 of them: the HL7 validator (HAPI 8.8) only
    warns, as the id is local to its container and resolves there whatever its length."""
    contained = bool(run.roots) and run.roots[-1] is not run.resources[-1]
    return contained and expr.endswith(".id") and isinstance(value, str) and ID_CHARACTERS.fullmatch(value) is not None


def _shown(value: Any) -> str:
    """A value as a finding quotes it: a long one cut short (a finding must not carry a megabyte)."""
    text = repr(value)
    return text if len(text) <= 200 else f"{text[:200]}… ({len(text)} characters)"

