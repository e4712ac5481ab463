"""The validator: resource JSON walked against compiled plans of its profiles and the R4 base."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from service.conformance.definitions import CORE_SD, Definitions
from service.conformance.profiles import shipped
from service.conformance.snapshot import SnapshotError, generate
from service.fhirjson import Finding
from service.validation import ids
from service.validation.bundles import Bundles
from service.validation.datatypes import Datatypes
from service.validation.invariants import Invariants
from service.validation.layouts import Layout, Name, layout, remember_clean
from service.validation.plan import ElementPlan, StructurePlan, TypeRef, compile_structure
from service.validation.plan import UnknownProfile as UnknownProfile  # raised by plan(); callers import it here
from service.validation.policy import ValidationPolicy
from service.validation.primitives import load_primitives
from service.validation.references import References, as_list
from service.validation.run import Run
from service.validation.sdslicing import check_slicing
from service.validation.slicing import Slicing
from service.validation.terminology import Terminology
from service.validation.units import valid_ucum
from service.validation.values import Values
from service.validation.walkers import COMPLEX, PRIMITIVE, RESOURCE, Step, Walk, compile_walk, make_step

UCUM = "http://unitsofmeasure.org"
ABSTRACT = {"Resource", "DomainResource"}  # types of the definitions, never of an instance

Occurrence = tuple[str, TypeRef | None, Any]  # JSON name, the type it implies, its value
Found = tuple[str, Any, Name]  # the first JSON name of an element present, its value, what the name is
ELEMENT = TypeRef("Element")
#: Our profiles of a resource that declares none (no meta.profile), when the policy applies ours.
DefaultProfiles = Callable[[dict[str, Any]], list[str]]


_CONTAINED = re.compile(r"\.contained\[\d+\]$")  # a resource walked inside another one


class Validator(Values, Slicing, References, Datatypes, Bundles):
    """`policy` is what a run accepts beyond FHIR's own rules (policy.py; a call may give its own);
    `our_profiles` names our profile of a resource without meta.profile, for a policy that applies ours
    (default: the shipped implementation guide's, service/conformance/profiles.py)."""

    def __init__(self, defs: Definitions, policy: ValidationPolicy | None = None,
                 our_profiles: DefaultProfiles | None = None) -> None:
        self.defs = defs
        self.policy = policy or ValidationPolicy()
        self.our_profiles = our_profiles
        self.global_profiles = _global_profiles(defs)
        self.primitives = load_primitives(defs)
        self.terminology = Terminology(defs)
        self.invariants = Invariants()
        self._plans: dict[str, StructurePlan] = {}
        # Keyed by id(); each entry keeps its key object alive, so an id is never reused while cached.
        self._steps: dict[tuple[int, int], Step] = {}
        self._layouts: dict[int, Layout] = {}
        self._layout_keys: list[list[ElementPlan]] = []
        self._walkers: dict[int, Walk] = {}  # by id() of an element list, as _layouts
        self._kinds: dict[str, int] = {}
        self._systems: dict[str, str | None] = {}
        self._in_value_set: set[tuple[Any, ...]] = set()
        self._codes_known: set[tuple[Any, ...]] = set()
        self._discriminator_values: dict[tuple[int, str], tuple[ElementPlan, tuple[str, Any] | None]] = {}
        self._targets: dict[int, tuple[TypeRef, set[str]]] = {}
        self._references_clean: set[tuple[Any, ...]] = set()
        self._contexts_allowed: set[tuple[Any, ...]] = set()
        self._extension_definitions: dict[str, tuple[dict[str, Any] | None, StructurePlan | None]] = {}
        self._unheld: dict[int, tuple[ElementPlan, list[str | None]]] = {}
        self._coded_clean: set[tuple[Any, ...]] = set()
        self._free_slices: dict[int, tuple[ElementPlan, bool]] = {}
        self._free_extensions: dict[int, tuple[ElementPlan, bool, frozenset[Any]]] = {}
        self._bundle_rules = {}
        self._rule_groups = {}
        self._rule_keys = []
        # From the package index, so the 650 core StructureDefinitions are not all parsed (≈65 MB).
        self._resource_types = {e["type"] for e in defs.core.index if e.get("resourceType") == "StructureDefinition"
                                and e.get("kind") == "resource" and e.get("id") == e.get("type")} - ABSTRACT

    # --- public ---------------------------------------------------------------------------

    def validate(self, resource: Any, profile: str | None = None, must_support: bool = False,
                 policy: ValidationPolicy | None = None) -> list[Finding]:
        """Every finding about `resource`, in document order, each reported once. `must_support` adds an
        information issue for each mustSupport element of its profiles that the resource leaves out; `policy`
        replaces the validator's own for this call."""
        run = Run(resource if isinstance(resource, dict) else {}, must_support=must_support,
                  policy=policy or self.policy)
        if not isinstance(resource, dict):
            run.add("fatal", "structure", "$this", "The resource must be a JSON object.")
            return run.findings
        kind = resource.get("resourceType")
        self._resource(resource, kind if isinstance(kind, str) and kind.isidentifier() else "Resource", run, profile)
        seen: set[tuple[str, str, str]] = set()
        unique = []
        for f in run.findings:
            if (f.severity, f.expression, f.message) not in seen:
                seen.add((f.severity, f.expression, f.message))
                unique.append(f)
        return unique

    def is_resource_type(self, name: str) -> bool:
        return name in self._resource_types

    def plan(self, url: str) -> StructurePlan:
        """The compiled plan of a StructureDefinition; one held only as a differential gets its snapshot generated
        (as HAPI's SnapshotGeneratingValidationSupport does). UnknownProfile when neither can be had."""
        if url not in self._plans:
            sd = self.defs.resolve(url)
            if sd is None or sd.get("resourceType") != "StructureDefinition":
                raise UnknownProfile(url)
            if "snapshot" not in sd:
                try:
                    sd = {**sd, "snapshot": {"element": generate(sd, self.defs)}}
                except (SnapshotError, KeyError, TypeError, ValueError, AttributeError, IndexError):
                    raise UnknownProfile(url) from None
            self._plans[url] = compile_structure(sd)
        return self._plans[url]

    # --- resources ------------------------------------------------------------------------

    def _resource(self, res: dict[str, Any], expr: str, run: Run, profile: str | None = None) -> None:
        kind = res.get("resourceType")
        if not isinstance(kind, str) or kind not in self._resource_types:
            run.add("error", "structure", expr, f"Unknown or missing resourceType {kind!r}.")
            return
        if profile:
            self.plan(profile)  # an unknown forced profile is the caller's error: UnknownProfile
        urls = [profile] if profile else self._profiles_of(res, run)
        plans = []
        for url in urls:
            try:
                plans.append(self.plan(url))
            except UnknownProfile:
                self._unknown_profile(url, expr, run)
        if not plans:
            plans = [self.plan(CORE_SD + kind)]
        if kind == "Bundle":
            plans = self._bundle(res, expr, run, plans)
        elif kind == "ConceptMap":
            self._concept_map(res, expr, run)
        elif kind == "ValueSet":
            self._value_set(res, expr, run)
        elif kind == "StructureDefinition":
            check_slicing(res, expr, run, self.defs)
        run.resources.append(res)
        # a contained resource's expression ends `.contained[i]`: the test of "]" spares a Bundle's entries the regex
        contained = bool(run.roots) and expr.endswith("]") and _CONTAINED.search(expr) is not None
        run.roots.append(run.roots[-1] if contained else res)
        ids.enter(res, contained, expr, run)
        for plan in plans:
            if plan.type != kind:
                run.add("error", "structure", expr, f"Profile {plan.url} is for {plan.type}, not {kind}.")
                continue
            run.plans.append(plan)
            self._object(res, plan.root.children, expr, run, resource=True)
            self._constraints(res, plan.root.constraints, kind, expr, run, plan.url)
            run.plans.pop()
        ids.leave(run)
        run.resources.pop()
        run.roots.pop()

    def _profiles_of(self, res: dict[str, Any], run: Run) -> list[str]:
        """What the resource claims (meta.profile), and the global profiles of its type; when it claims none
        and the policy applies ours, our profile of its type."""
        meta = res.get("meta")
        declared = meta.get("profile") if isinstance(meta, dict) else None
        urls = []
        for url in declared if isinstance(declared, list) else ():  # a loop, not a comprehension's frame: per resource
            if isinstance(url, str):
                urls.append(url)
        if not urls and run.policy.our_profiles:
            urls = (self.our_profiles or shipped().defaults)(res)
        found = self.global_profiles.get(str(res.get("resourceType"))) if run.policy.global_profiles else None
        if found:  # none for most types
            urls += [u for u in found if u not in urls]
        return urls

    def _unknown_profile(self, url: str, expr: str, run: Run) -> None:
        severity = run.policy.unknown_profile
        if severity == "ignore":
            return
        consequence = ", so the resource is not accepted" if severity == "error" else \
            "; the resource is checked against its base type"
        run.add(severity, "structure", f"{expr}.meta.profile",
                f"Profile reference '{url}' has not been checked because it could not be found{consequence}.")

    # --- objects and elements -------------------------------------------------------------

    def _object(self, obj: dict[str, Any], children: list[ElementPlan], expr: str, run: Run,
                resource: bool = False) -> None:
        walk = self._walkers.get(id(children)) or self._walker(children)
        if not run.sliced:
            walk(self, obj, expr, run, resource)
            return
        # inside a sliced element, whose items are walked twice (against the element, then their slice): an object
        # walked against the same element list before, in the same place, with nothing found, is passed over
        key = (id(obj), id(children), run.owner_types, run.primitive_owner, id(run.resources[-1] if run.resources
                                                                               else None))
        if key not in run.walked:
            mark = len(run.findings)
            walk(self, obj, expr, run, resource)
            if len(run.findings) == mark:
                run.walked.add(key)

    def _walker(self, children: list[ElementPlan]) -> Walk:
        self._layout_keys.append(children)  # keeps the list alive, so its id() is never reused while cached
        found = self._walkers[id(children)] = compile_walk(self, children)
        return found

    def _object_generic(self, obj: dict[str, Any], children: list[ElementPlan], expr: str, run: Run,
                        resource: bool = False) -> None:
        """The walk of an object against its element list, whatever the object holds (walkers.compile_walk)."""
        names, always, single = self._layouts.get(id(children)) or self._layout(children)
        ident = obj.get("id")
        if ident.__class__ is str and not resource:
            ids.element(obj, ident, expr, run)
        found: dict[int, Found] = {}
        extended: dict[int, int] = {}
        others: dict[int, list[Occurrence]] = {}  # a choice element's second (third …) type present: an error
        for key, value in obj.items():
            hit = names.get(key)  # no element's JSON name starts with `_`: a holder is never one
            if hit is None:
                if resource and key == "resourceType":
                    continue
                hit = names.get(key[1:]) if key.startswith("_") else None
                if hit is None:
                    run.add("error", "structure", f"{expr}.{key}", f"Unknown element '{key}' in "
                                                                   f"{expr.rsplit('.', 1)[-1]}.")
                    continue
                run.primitive_owner, run.owner_types = hit[1].path, tuple(t.code for t in hit[1].types)
                extended[hit[0]] = self._primitive_extensions(value, f"{expr}.{key}", run)
                run.primitive_owner, run.owner_types = None, ()
            elif hit[0] in found:
                others.setdefault(hit[0], []).append((key, hit[2], value))
            else:
                found[hit[0]] = (key, value, hit)
        if run.must_support:
            self._must_support_elements(children, always, found, extended, others, expr, run)
            return
        for i in sorted(always.union(found, extended)):  # present or required, in definition order
            present = found.get(i)
            if present is not None and i in single and i not in extended and i not in others:
                key, value, (_, child, kind, clean) = present
                if clean is not None and value.__class__ is str:
                    if value in clean:
                        continue  # this text was found here before, with nothing to say
                    mark = len(run.findings)
                    self._value(value, child, kind, f"{expr}.{key}", run)
                    if len(run.findings) == mark and not run.policy.tx_server:
                        remember_clean(clean, value)
                    continue
                if not isinstance(value, list):  # what _element would do, without its work
                    self._value(value, child, kind, f"{expr}.{key}", run)
                    continue
            self._element(children[i], _occurrences(present, others.get(i)), extended.get(i, 0), expr, run)

    def _must_support_elements(self, children: list[ElementPlan], always: frozenset[int], found: dict[int, Found],
                               extended: dict[int, int], others: dict[int, list[Occurrence]], expr: str,
                               run: Run) -> None:
        """Every element in definition order, and an information issue for each absent mustSupport one."""
        for i, child in enumerate(children):
            present = i in found or i in extended
            if present or i in always:
                self._element(child, _occurrences(found.get(i), others.get(i)), extended.get(i, 0), expr, run)
            if not present and child.must_support and child.min == 0:  # min > 0: an error already
                self._absent_must_support(child, expr, run)

    def _absent_must_support(self, plan: ElementPlan, expr: str, run: Run) -> None:
        """Only reported on request: an absent mustSupport element is allowed, but a receiver relying on our
        profiles expects it when the sender has it (the element's parent is present, or it is top level)."""
        profile = run.plans[-1].url if run.plans else "the profile"
        where = f"{expr}.{plan.name}" if not plan.choice else f"{expr}.{plan.name}[x]"
        run.add("information", "informational", where,
                f"{plan.path} is mustSupport in {profile} but absent: send it when it is known.")

    def _layout(self, children: list[ElementPlan]) -> Layout:
        self._layout_keys.append(children)  # keeps the list alive, so its id() is never reused while cached
        found = self._layouts[id(children)] = layout(children, self.primitives)
        return found

    def _element(self, plan: ElementPlan, occurrences: Sequence[Occurrence], extended: int, expr: str,
                 run: Run) -> None:
        if len(occurrences) > 1:
            run.add("error", "structure", expr, f"{plan.path} has more than one type present "
                    f"({', '.join(k for k, _, _ in occurrences)}); a choice element takes one.")
        items: list[Occurrence] = []
        for key, kind, value in occurrences:
            if plan.is_array:
                where = f"{expr}.{key}"
                if not isinstance(value, list):
                    run.add("error", "structure", where, f"{key} must be a JSON array.")
                    value = [value]
                elif not value:
                    run.add("error", "structure", where, f"{key} must not be an empty array (ele-1).")
                items += [(f"{where}[{i}]", kind, v) for i, v in enumerate(value) if v is not None or not extended]
            elif isinstance(value, list):
                run.add("error", "structure", f"{expr}.{key}", f"{key} must be a single value, not an array.")
            else:
                items.append((f"{expr}.{key}", kind, value))
        count = max(len(items), extended)
        where = ""  # the element's own path, only built when a finding or its slicing needs it
        if count < plan.min or (plan.max is not None and count > plan.max) or plan.slices:
            where = f"{expr}.{plan.name}" if not plan.choice else f"{expr}.{plan.name}[x]"
            if count < plan.min:
                run.add("error", "required", where, f"{plan.path}: minimum required = {plan.min}, but only found "
                                                    f"{count}.")
            if plan.max is not None and count > plan.max:
                run.add("error", "structure", where, f"{plan.path}: maximum allowed = {plan.max}, but found {count}.")
        if not plan.slices:
            for item_expr, kind, value in items:
                self._value(value, plan, kind, item_expr, run)
            return
        self._sliced_element(plan, items, where, run)

    def _primitive_extensions(self, value: Any, expr: str, run: Run) -> int:
        """`_field` holds a primitive's id and extensions; returns how many values it stands for."""
        entries = value if isinstance(value, list) else [value]
        extension_plan = self._type_plan(ELEMENT)
        for i, entry in enumerate(entries):
            where = f"{expr}[{i}]" if isinstance(value, list) else expr
            if entry is None:
                continue
            if not isinstance(entry, dict) or not entry:
                run.add("error", "structure", where, "A primitive's extension holder must be a non-empty object.")
                continue
            self._object(entry, extension_plan.root.children, where, run)
        return sum(1 for e in entries if e is not None)

    # --- values -----------------------------------------------------------------------------

    def _value(self, value: Any, plan: ElementPlan, kind: TypeRef | None, expr: str, run: Run) -> None:
        if value is None:
            run.add("error", "structure", expr, "null is not a valid FHIR value.")
            return
        if kind is None and plan.content_reference:
            self._content_reference(value, plan, expr, run)
            return
        if kind is None:
            kind = plan.types[0] if plan.types else ELEMENT
        what = self._kinds.get(kind.code)
        if what is None:
            what = self.kind_of(kind.code)
        if what == PRIMITIVE:
            self._primitive(value, plan, kind, expr, run)
            return
        if what == RESOURCE:
            if not isinstance(value, dict):
                run.add("error", "structure", expr, "A resource must be a JSON object.")
            else:
                self._resource(value, expr, run)
            return
        if not isinstance(value, dict):
            run.add("error", "structure", expr, f"{plan.path} must be a JSON object ({kind.code}).")
            return
        if not value:
            run.add("error", "structure", expr, f"{plan.path} must not be an empty object (ele-1).")
            return
        step = self.step(plan, kind)
        code = step.code
        # an extension that names a definition is walked against it first; when that finds nothing, the walk
        # against the element's type (base Extension, which a definition only narrows) is skipped, and so is the
        # walk against a slice typed by that definition (the same walk, when no nested extension's context can
        # see the owner types it is walked with)
        clean = code == "Extension" and (
            (id(value), id(step.children)) in run.clean and "extension" not in value if kind.profiles
            else self._clean_against_definition(value, expr, run))
        if not clean:
            outer, run.owner_types = run.owner_types, step.owner
            self._object(value, step.children, expr, run)
            run.owner_types = outer
        if step.fixed_or_pattern:
            self._fixed_and_pattern(value, plan, expr, run)
        if code == "Extension":
            self._extension(value, plan, kind, expr, run, walked=clean)
        elif code == "Reference":
            self._reference(value, kind, expr, run)
        if step.bound:
            self._binding(value, code, plan, expr, run)
        unit = value.get("code") if step.quantity and value.get("system") == UCUM else None
        if isinstance(unit, str) and not valid_ucum(unit):
            run.add("error", "code-invalid", expr, f"The unit {unit!r} is not valid UCUM.")
        if step.coded:
            self._known_codes(value, code, expr, run)
        if step.datatype:
            self._datatype(value, code, expr, run)
        if step.constraints:
            self._constraints(value, step.constraints, step.base, expr, run, plan.id)

    def kind_of(self, code: str) -> int:
        what = self._kinds.get(code)
        if what is None:
            what = PRIMITIVE if self.primitives.get(code) is not None or code.startswith(
                "http://hl7.org/fhirpath/System.") else RESOURCE if code == "Resource" or code in self._resource_types \
                else COMPLEX
            self._kinds[code] = what
        return what

    def step(self, plan: ElementPlan, kind: TypeRef) -> Step:
        return self._steps.get((id(plan), id(kind))) or self._step(plan, kind)

    def _step(self, plan: ElementPlan, kind: TypeRef) -> Step:
        step = self._steps[id(plan), id(kind)] = make_step(plan, kind, self._type_plan(kind))
        return step

    def _content_reference(self, value: Any, plan: ElementPlan, expr: str, run: Run) -> None:
        """An element defined by reference to another (`#Questionnaire.item`): use that one's rules."""
        target = (plan.content_reference or "").split("#", 1)[-1]
        structure = run.plans[-1] if run.plans else None
        node = _find_path(structure.root, target) if structure else None
        if node is None:
            return
        if not isinstance(value, dict) or not value:
            run.add("error", "structure", expr, f"{plan.path} must be a non-empty JSON object.")
            return
        self._object(value, node.children, expr, run)

    def _type_plan(self, kind: TypeRef) -> StructurePlan:
        url = kind.profiles[0] if kind.profiles else CORE_SD + kind.code
        try:
            return self.plan(url)
        except UnknownProfile:
            return self.plan(CORE_SD + kind.code)


# --- helpers ----------------------------------------------------------------------------------

def _occurrences(present: Found | None, others: list[Occurrence] | None) -> list[Occurrence]:
    first = [] if present is None else [(present[0], present[2][2], present[1])]
    return first + others if others else first


def _find_path(root: ElementPlan, path: str) -> ElementPlan | None:
    if root.path == path:
        return root
    for child in root.children:
        if path == child.path or path.startswith(child.path + "."):
            return _find_path(child, path)
    return None


def _global_profiles(defs: Definitions) -> dict[str, tuple[str, ...]]:
    """resource type → the profiles the ImplementationGuides we hold declare global for it (IG.global)."""
    out: dict[str, list[str]] = {}
    for resource in defs.own.values():
        if resource.get("resourceType") == "ImplementationGuide":
            for entry in as_list(resource.get("global")):
                if isinstance(entry, dict) and isinstance(kind := entry.get("type"), str) and isinstance(
                        url := entry.get("profile"), str):
                    out.setdefault(kind, []).append(url)
    return {kind: tuple(urls) for kind, urls in out.items()}
