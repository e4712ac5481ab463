"""An element list's walk generated once as Python code: the dispatch, cardinality and type checks in line."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from service.validation import ids
from service.validation.bindings import codings_of, remember
from service.validation.bundle_invariants import said_bare
from service.validation.coded import FREEZE, coded_key
from service.validation.invariants import NATIVE, bundle_path, fast_path
from service.validation.layouts import IDENTITIES, Layout, Name, remember_clean
from service.validation.plan import Constraint, ElementPlan, StructurePlan, TypeRef
from service.validation.primitives import Primitive
from service.validation.units import valid_ucum
from service.validation.values import CODED, UUID

#: walk(validator, obj, expr, run, resource): an object's elements checked against one list of element plans
Walk = Callable[[Any, dict[str, Any], str, Any, bool], None]
UCUM = "http://unitsofmeasure.org"
QUANTITIES = {"Quantity", "SimpleQuantity", "Duration", "Age", "Distance", "Count", "MoneyQuantity"}
DATATYPE_CHECKED = {"Attachment", "Coding", "CodeableConcept", "Identifier"}
#: what kind of value a type code is: a primitive, a resource, or a datatype walked as an object
PRIMITIVE, RESOURCE, COMPLEX = range(3)
#: an element absent from an object (not a JSON value, so never confused with one)
_NO = object()


class Validator(Protocol):
    """What the generation asks of the validator (engine.Validator), whose methods the generated code calls."""

    _layouts: dict[int, Layout]
    _walkers: dict[int, Walk]
    primitives: dict[str, Primitive]

    def _layout(self, children: list[ElementPlan]) -> Layout: ...

    def kind_of(self, code: str) -> int: ...

    def step(self, plan: ElementPlan, kind: TypeRef) -> Step: ...

    def _context_free(self, slice_: ElementPlan, code: str) -> bool: ...

    _coded_clean: set[tuple[Any, ...]]


def compile_walk(validator: Validator, children: list[ElementPlan]) -> Walk:
    """The walk of `children`, equal in findings and their order to Validator._object_generic, which it hands the
    object over to whenever the object is not the common case: a key no element has (or `_field`, a primitive's
    extensions), two types of one choice element, or a run reporting absent mustSupport elements. In the common
    case each element present is checked by code written for it: a single value, an array of them, its type's
    object walked and that type's rules called, without looking any of it up again."""
    names, always, single, env, lines = _start(validator, children)
    choice = {key: hit[0] for key, hit in names.items() if children[hit[0]].choice}
    env["CHOICE"] = choice.get
    lines += [f"    s = [NO] * {len(children)}",
             "    for key, value in obj.items():",
             "        p = PLAIN(key)",
             "        if p is not None:",
             "            s[p] = value",
             "            continue"]
    if choice:
        lines += ["        p = CHOICE(key)",
                  "        if p is not None and s[p] is NO:",
                  "            s[p] = key",  # a choice element's slot holds its JSON name, which says its type
                  "            continue"]
    lines += ["        if resource and key == 'resourceType':",
              "            continue",
              "        return self._object_generic(obj, CH, expr, run, resource)",
              "    ident = obj.get('id')",
              "    if ident.__class__ is str and not resource:",
              "        ids_element(obj, ident, expr, run)"]
    for i, child, keys in _positions(children, names, env):
        if not keys:
            if i in always:
                lines += [f"    self._element(K{i}, [], 0, expr, run)"]
            continue
        lines += [f"    v = s[{i}]", "    if v is not NO:"]
        if child.choice:
            lines += _choice(i, keys, i in single, env)
        else:
            lines += _plain(validator, i, child, keys[0], i in single, env)
        if i in always:
            lines += ["    else:", f"        self._element(K{i}, [], 0, expr, run)"]
    return _compiled(lines, env, children)


def _start(validator: Validator, children: list[ElementPlan]) \
        -> tuple[dict[str, Name], frozenset[int], frozenset[int], dict[str, Any], list[str]]:
    """The layout of `children`, the names the generated code is given, and its first lines."""
    names, always, single = validator._layouts.get(id(children)) or validator._layout(children)
    env: dict[str, Any] = {"NO": _NO, "CH": children, "ids_element": ids.element, "remember_clean": remember_clean,
                           "valid_ucum": valid_ucum, "UCUM": UCUM, "WALKS": validator._walkers,
                           "codings_of": codings_of}
    env["PLAIN"] = {key: hit[0] for key, hit in names.items() if not children[hit[0]].choice}.get
    lines = ["def walk(self, obj, expr, run, resource):",
             "    if run.must_support:",
             "        return self._object_generic(obj, CH, expr, run, resource)"]
    return names, always, single, env, lines


def _positions(children: list[ElementPlan], names: dict[str, Name],
               env: dict[str, Any]) -> list[tuple[int, ElementPlan, list[tuple[str, Name]]]]:
    """(position, element, its JSON names) of each element, each element bound as K<position>."""
    by_position: dict[int, list[tuple[str, Name]]] = {}
    for key, hit in names.items():
        by_position.setdefault(hit[0], []).append((key, hit))
    for i, child in enumerate(children):
        env[f"K{i}"] = child
    return [(i, child, by_position.get(i, [])) for i, child in enumerate(children)]


def _compiled(lines: list[str], env: dict[str, Any], children: list[ElementPlan]) -> Walk:
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), f"<walk {children[0].path if children else '-'}>", "exec"), env, namespace)  # noqa: S102 - our own generated code
    walk: Walk = namespace["walk"]
    return walk


def compile_shaped(validator: Validator, children: list[ElementPlan], shape: tuple[str, ...]) -> Walk | None:
    """compile_walk's walk for objects with exactly the keys `shape`, each the name of an element that is no choice
    (None when they are not): its lines for each element present, in definition order, without sorting the keys
    into slots or testing for the absent elements (the required ones are reported absent, as there)."""
    names, always, single, env, lines = _start(validator, children)
    if not all(env["PLAIN"](key) is not None for key in shape):
        return None
    if "id" in shape:
        lines += ["    ident = obj['id']",
                  "    if ident.__class__ is str and not resource:",
                  "        ids_element(obj, ident, expr, run)"]
    for i, child, keys in _positions(children, names, env):
        if keys and keys[0][0] in shape:
            env[f"J{i}"] = keys[0][0]
            body = _plain(validator, i, child, keys[0], i in single, env)
            lines += [f"    v = obj[J{i}]", *(line[4:] for line in body)]
        elif i in always:
            lines += [f"    self._element(K{i}, [], 0, expr, run)"]
    return _compiled(lines, env, children)


#: Element lists walked once per entry of a large document (a Bundle's entries), whose objects come in few shapes:
#: each shape met gets a walk of its own (shaped_walk), up to SHAPES_KEPT of them per list
SHAPED = frozenset({"Bundle.entry"})
SHAPES_KEPT = 32


def shaped_walk(validator: Any, children: list[ElementPlan], walks: dict[tuple[str, ...], Walk], obj: dict[str, Any]) \
        -> Walk:
    """The walk of `obj` against `children`, an element list of SHAPED, by the keys it has: kept in `walks` by its
    keys (a walk of its own when compile_shaped can write one, else the general one), until SHAPES_KEPT are."""
    general: Walk = validator._walkers.get(id(children)) or validator._walker(children)
    if len(walks) >= SHAPES_KEPT:
        return general
    key = tuple(obj)
    found = walks[key] = compile_shaped(validator, children, key) or general
    return found


def _choice(i: int, keys: list[tuple[str, Name]], single: bool, env: dict[str, Any]) -> list[str]:
    """A choice element present under one of its names (its slot holds the name)."""
    env[f"T{i}"] = {key: (hit[2], hit[3]) for key, hit in keys}
    if not single:
        return [f"        t, c = T{i}[v]", f"        self._element(K{i}, [(v, t, obj[v])], 0, expr, run)"]
    return [f"        k = v; v = obj[k]; t, c = T{i}[k]",
            "        if c is not None and v.__class__ is str:",
            "            if v not in c:",
            "                mark = len(run.findings)",
            f"                self._primitive(v, K{i}, t, f'{{expr}}.{{k}}', run)",  # clean sets: primitives only
            "                if len(run.findings) == mark and not run.policy.tx_server:",
            "                    remember_clean(c, v)",
            "        elif not isinstance(v, list):",
            f"            self._value(v, K{i}, t, f'{{expr}}.{{k}}', run)",
            "        else:",
            f"            self._element(K{i}, [(k, t, v)], 0, expr, run)"]


def _plain(validator: Validator, i: int, child: ElementPlan, named: tuple[str, Name], single: bool,
           env: dict[str, Any]) -> list[str]:
    key, (_, _, kind, clean) = named
    env[f"T{i}"], env[f"C{i}"], env[f"N{i}"] = kind, clean, "." + key
    generic = f"self._element(K{i}, [(N{i}[1:], T{i}, v)], 0, expr, run)"
    if single:
        out = []
        if clean is not None:  # only a primitive type has one (layouts.clean_texts): _value would call _primitive
            env[f"P{i}"] = kind or child.types[0]
            out += ["        if v.__class__ is str:",
                    f"            if v not in C{i}:",
                    "                mark = len(run.findings)",
                    f"                self._primitive(v, K{i}, P{i}, expr + N{i}, run)",
                    "                if len(run.findings) == mark and not run.policy.tx_server:",
                    f"                    remember_clean(C{i}, v)",
                    "        elif not isinstance(v, list):"]
        elif (uri := _identity_uri(validator, child, kind)) is not None:
            # a valid uri, and a urn:uuid: one in the form _text_rules asks: Values._primitive has nothing to say
            env[f"U{i}"], env["UUID"] = uri, UUID.fullmatch
            out += [f"        if v.__class__ is str and v and U{i}(v) is not None \\",
                    "                and (not v.startswith('urn:uuid:') or UUID(v) is not None):",
                    "            pass",
                    "        elif not isinstance(v, list):"]
        else:
            out += ["        if not isinstance(v, list):"]
        out += [f"            e = expr + N{i}"]
        out += _value(validator, i, child, kind, "v", "            ", env)
        return out + ["        else:", f"            {generic}"]
    if child.is_array and not child.slices and (child.max is None or child.max >= 1):
        test = "v.__class__ is list and v"
        env[f"MIN{i}"], env[f"MAX{i}"] = child.min, child.max  # names, not text: a profile's values stay data
        if child.min > 1:
            test += f" and len(v) >= MIN{i}"
        if child.max is not None:
            test += f" and len(v) <= MAX{i}"
        each = ["            for n, x in enumerate(v):",
                "                e = f'{w}[{n}]'",
                *_value(validator, i, child, kind, "x", "                ", env, listed="v")]
        bare = _bare_entries(validator, i, child, kind, env)
        if bare:
            each = [*bare, "            else:", *("    " + line for line in each)]
        return [f"        if {test}:", f"            w = expr + N{i}", *each, "        else:", f"            {generic}"]
    return [f"        {generic}"]


def _bare_entries(validator: Validator, i: int, child: ElementPlan, kind: TypeRef | None,
                  env: dict[str, Any]) -> list[str]:
    """For Bundle.entry (SHAPED), the loop over an entry list bundles.py found bare (bundle_invariants.said_bare: each
    entry an object of a fullUrl, a uri without whitespace, and a resource, whose rules bdl-5 and bdl-8 hold): each
    resource given to _resource at `.resource`, when that is all the loop below would do with such an entry (no
    check of the entry's step but rules with a Bundle fast path, which the quiet list answers; its fullUrl a uri
    tested outright; its resource typed a resource; no other element required). [] otherwise."""
    resolved = kind if kind is not None else child.types[0] if child.types else None
    if child.path not in SHAPED or resolved is None or validator.kind_of(resolved.code) != COMPLEX:
        return []
    try:
        step = validator.step(child, resolved)
    except LookupError:
        return []
    if step.fixed_or_pattern or step.bound or step.quantity or step.coded or step.datatype \
            or step.code in ("Reference", "Extension", *FREEZE) \
            or not all(bundle_path(rule.expression) for rule in step.constraints):
        return []
    names, always, single = validator._layouts.get(id(step.children)) or validator._layout(step.children)
    url, resource = names.get("fullUrl"), names.get("resource")
    if url is None or resource is None or not always <= {url[0], resource[0]} \
            or not {url[0], resource[0]} <= single or url[1].choice or resource[1].choice:
        return []
    check = _identity_uri(validator, url[1], url[2])
    if url[3] is not None or check is None or check.__self__.pattern != r"\S*":  # what bundles.py tests, joined
        return []
    typed = resource[2] if resource[2] is not None else resource[1].types[0] if resource[1].types else None
    if typed is None or (resource[2] is None and resource[1].content_reference) \
            or validator.kind_of(typed.code) != RESOURCE:
        return []
    env["BARE"], env[f"O{i}"] = said_bare, step.owner
    return ["            if BARE(obj) and not run.sliced:",
            "                o = run.owner_types",
            "                for n, x in enumerate(v):",
            f"                    run.owner_types = O{i}",
            "                    self._resource(x['resource'], f'{w}[{n}].resource', run)",
            "                run.owner_types = o"]


def _identity_uri(validator: Validator, child: ElementPlan, kind: TypeRef | None) -> Any:
    """The uri regex's fullmatch for an element of layouts.IDENTITIES typed uri with nothing else to check of its
    text (no fixed value, pattern or binding): the walk tests its texts outright, remembering none."""
    code = (kind or (child.types[0] if len(child.types) == 1 else None))
    primitive = validator.primitives.get("uri")
    if child.path not in IDENTITIES or code is None or code.code != "uri" or primitive is None \
            or primitive.pattern is None or child.fixed or child.pattern or child.binding:
        return None
    return primitive.pattern.fullmatch


def _value(validator: Validator, i: int, child: ElementPlan, kind: TypeRef | None, v: str, pad: str,
           env: dict[str, Any], listed: str | None = None) -> list[str]:
    """One value `v` of the element at position i, at `e`: Validator._value written out for its type (`listed`:
    the array holding it, if any)."""
    generic = [f"{pad}self._value({v}, K{i}, T{i}, e, run)"]
    if kind is None and child.content_reference:
        return generic
    resolved = kind if kind is not None else child.types[0] if child.types else None
    if resolved is None:
        return generic
    what = validator.kind_of(resolved.code)
    if what == PRIMITIVE:
        env[f"R{i}"] = resolved
        return [f"{pad}if {v} is None:", f"    {generic[0]}", f"{pad}else:",
                f"{pad}    self._primitive({v}, K{i}, R{i}, e, run)"]
    if what == RESOURCE:  # a Bundle entry's or a contained resource: what Validator._value does with an object
        return [f"{pad}if {v}.__class__ is dict:", f"{pad}    self._resource({v}, e, run)", f"{pad}else:",
                f"    {generic[0]}"]
    if what != COMPLEX or resolved.code == "Extension":
        return generic
    try:
        step = validator.step(child, resolved)
    except LookupError:  # a type whose plan cannot be had: _value says so when such a value turns up
        return generic
    env[f"S{i}"], env[f"R{i}"], env[f"O{i}"] = step.children, resolved, step.owner
    env[f"I{i}"] = id(step.children)
    # a plain Coding or CodeableConcept walked here before with nothing found is not walked again (coded.py)
    memo = step.code in FREEZE and not resolved.profiles and validator._context_free(child, step.code)
    if memo:
        env[f"M{i}"], env["coded_key"], env["CLEAN"], env["remember"] = \
            (id(child), step.code), coded_key, validator._coded_clean, remember
    head = [f"{pad}if {v}.__class__ is dict and {v}:"]
    if memo:
        head += [f"{pad}    mk = coded_key(M{i}, {v}, run)",
                 f"{pad}    if mk is None or mk not in CLEAN:",
                 f"{pad}        mark = len(run.findings)"]
        pad += "    "
    walk = f"(WALKS.get(I{i}) or self._walker(S{i}))"
    if child.path in SHAPED:  # by the object's keys
        env[f"H{i}"], env["shaped_walk"] = {}, shaped_walk
        walk = f"(H{i}.get(tuple({v})) or shaped_walk(self, S{i}, H{i}, {v}))"
    out = [f"{pad}    o = run.owner_types",
           f"{pad}    run.owner_types = O{i}",
           f"{pad}    if run.sliced:",
           f"{pad}        self._object({v}, S{i}, e, run)",
           f"{pad}    else:",
           f"{pad}        {walk}(self, {v}, e, run, False)",
           f"{pad}    run.owner_types = o"]
    if step.fixed_or_pattern:
        out += [f"{pad}    self._fixed_and_pattern({v}, K{i}, e, run)"]
    if step.code == "Reference":
        out += [f"{pad}    self._reference({v}, R{i}, e, run)"]
    both = step.bound and step.coded  # their codings read once
    if both:
        out += [f"{pad}    cs = codings_of({v}, R{i}.code)"]
    if step.bound:
        out += [f"{pad}    self._binding({v}, R{i}.code, K{i}, e, run{', cs' if both else ''})"]
    if step.quantity:
        out += [f"{pad}    u = {v}.get('code') if {v}.get('system') == UCUM else None",
                f"{pad}    if isinstance(u, str) and not valid_ucum(u):",
                f"{pad}        run.add('error', 'code-invalid', e, f'The unit {{u!r}} is not valid UCUM.')"]
    if step.coded:
        out += [f"{pad}    self._known_codes({v}, R{i}.code, e, run{', cs' if both else ''})"]
    if step.datatype:
        out += [f"{pad}    self._datatype({v}, R{i}.code, e, run)"]
    if step.constraints:
        env[f"X{i}"], env[f"B{i}"] = step.constraints, step.base
        out += _constraints(i, step.constraints, v, pad, env, listed)
    if memo:
        out += [f"{pad}    if mk is not None and len(run.findings) == mark:",
                f"{pad}        remember(CLEAN, mk)"]
        pad = pad[:-4]
    return head + out + [f"{pad}else:", f"{pad}    {generic[0].strip()}"]


def _constraints(i: int, constraints: tuple[Constraint, ...], v: str, pad: str, env: dict[str, Any],
                 listed: str | None) -> list[str]:
    """Values._constraints on `v` written out: a rule with a Bundle fast path (invariants.bundle_path: bdl-5 and
    bdl-8, on every entry) is answered here, the others, and any the fast path defers, through _constraints in
    their order, so the findings and their order are the same. For an entry list bundles.py found quiet (every
    entry holds them: run.quiet_entries), those rules are not asked again per entry."""
    paths = [bundle_path(rule.expression) for rule in constraints]
    fast = [fast_path(rule.expression) for rule in constraints]
    if not any(paths) and not any(fast):
        return [f"{pad}    self._constraints({v}, X{i}, B{i}, e, run, K{i}.id)"]
    out = [f"{pad}    r = run.resources[-1] if run.resources else run.root"] if any(paths) else []
    if any(fast):
        out += [f"{pad}    rr = run.roots[-1] if run.roots else run.root"]  # %rootResource, as _constraints gives
    rest = []  # the rules without a Bundle fast path, for a quiet list
    for j, (rule, path, quick) in enumerate(zip(constraints, paths, fast, strict=True)):
        env[f"X{i}_{j}"] = (rule,)
        if path is None and quick is None:
            out += [f"{pad}    self._constraints({v}, X{i}_{j}, B{i}, e, run, K{i}.id)"]
            rest += [out[-1]]
            continue
        source = f" (defined in {rule.source})" if rule.source else ""
        env[f"F{i}_{j}"] = path or quick
        env[f"W{i}_{j}"] = ("error" if rule.severity == "error" else "warning",
                            f"Constraint failed: {rule.key}: '{rule.human}'{source}")
        lines = [f"{pad}    a = F{i}_{j}({v}, {'r' if path else 'rr'})",
                 f"{pad}    if a is None:",
                 f"{pad}        self._constraints({v}, X{i}_{j}, B{i}, e, run, K{i}.id)",
                 f"{pad}    elif not a:",
                 f"{pad}        run.add(W{i}_{j}[0], 'invariant', e, W{i}_{j}[1])"]
        out += lines
        rest += lines if path is None else []
    if listed is None:
        return out
    quiet = [f"{pad}    if run.quiet_entries is not {listed}:", *("    " + line for line in out)]
    return quiet + ([f"{pad}    else:", *("    " + line for line in rest)] if rest else [])


@dataclass(frozen=True, slots=True)
class Step:
    """What the walk does to an object value of one element typed one way (holds both, keeping their ids)."""

    plan: ElementPlan
    kind: TypeRef
    code: str
    owner: tuple[str]  # run.owner_types while its children are walked
    children: list[ElementPlan]
    fixed_or_pattern: bool
    bound: bool  # a binding to check
    quantity: bool  # a UCUM unit to check
    coded: bool  # codes of code systems held completely to check
    datatype: bool  # datatype rules no StructureDefinition states
    constraints: tuple[Constraint, ...]  # without those checked natively
    base: str  # the type the constraints' FHIRPath starts from


def make_step(plan: ElementPlan, kind: TypeRef, type_plan: StructurePlan) -> Step:
    """What is done to an object value of `plan` typed `kind` (whose plan is `type_plan`), decided once per pair."""
    code = kind.code
    keys = {c.key for c in plan.constraints}  # the element's own constraints, then its type's not restated
    constraints = tuple(c for c in plan.constraints + tuple(c for c in type_plan.root.constraints
                                                             if c.key not in keys) if c.key not in NATIVE)
    return Step(plan, kind, code, (code,), plan.children or type_plan.root.children,
                bool(plan.fixed or plan.pattern), bool(plan.binding) and code in CODED, code in QUANTITIES,
                code in ("Coding", "CodeableConcept", "Quantity"), code in DATATYPE_CHECKED, constraints,
                code if code not in ("BackboneElement", "Element") else plan.path)
