"""FHIRPath invariants through fhirpathpy, compiled once per expression; ele-1 and ext-1 natively."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from service.validation import core_invariants, fhirpath_fixes, ig_invariants
from service.validation.bundle_invariants import BUNDLE
from service.validation.fhirpath_compiled import Compiled, compile_expression
from service.validation.ig_invariants import Native
from service.validation.plain import InvariantError as InvariantError

fhirpath_fixes.apply()
R4 = models["r4"]
#: The native invariants on plain JSON (ig_invariants, core_invariants), by expression
PLAIN = {**ig_invariants.NATIVE, **core_invariants.NATIVE}
#: Checked natively by the walker (a test proves the native checks agree with the FHIRPath):
#: ele-1 uses hasValue(), which fhirpathpy does not implement; ext-1 is on every extension.
NATIVE = {"ele-1", "ext-1"}


def _has_value(inputs: list[Any]) -> bool:
    """FHIRPath hasValue(): one primitive with an actual value (fhirpathpy lacks it)."""
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], (dict, list))


def _html_checks(inputs: list[Any]) -> bool:
    """htmlChecks() (txt-1, txt-2): XHTML narrative rules are not checked here; R4 marks them as
    implementation-specific, and narratives are informative."""
    return True


SYSTEM_TYPE = re.compile(r"\b(is|as)\s+(?:System\.)?(Boolean|String|Integer|Decimal|DateTime|Date|Time)\b")


def fhir_types(expression: str) -> str:
    """`answer is Boolean` (que-7) names the System type, which an R4 boolean element converts to;
    fhirpathpy answers false there, so test against the FHIR type, which it does recognise."""
    return SYSTEM_TYPE.sub(lambda m: f"{m.group(1)} {m.group(2)[0].lower()}{m.group(2)[1:]}", expression)


#: R4 invariants the HL7 validator evaluates rewritten (org.hl7.fhir.validation FHIRPathExpressionFixer.fixExpr, "a hack
#: work around for past publication of wrong FHIRPath expressions"); without them an empty result would fail them:
#: ref-1 on a Reference with no `reference` (or `#`, the container), ras-2 on a decimal probability. que-12's human
#: text says "more than one enableWhen", which its expression (`> 2`) does not.
HL7_REWRITES = {
    "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id"
    ".trace('ids'))": "reference.exists() implies (reference = '#' or (reference.startsWith('#').not() or "
                      "(reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))))",
    "probability is decimal implies (probability as decimal) <= 100":
        "(probability.exists() and (probability is decimal)) implies ((probability as decimal) <= 100)",
    "enableWhen.count() > 2 implies enableBehavior.exists()": "enableWhen.count() >= 2 implies enableBehavior.exists()",
}


def evaluated(expression: str) -> str:
    """The FHIRPath actually evaluated for a published expression: HL7's rewrite, with FHIR types (fhir_types)."""
    return fhir_types(HL7_REWRITES.get(expression, expression))


class Invariants:
    def __init__(self) -> None:
        self._compiled: dict[str, Any] = {}
        self._native: dict[str, Compiled | None] = {}
        #: per expression, how it is answered: (GUARDS, FAST, PLAIN, BUNDLE entries), looked up once
        self._ways: dict[str, tuple[frozenset[str] | None, Fast | None, Native | None, Fast | None]] = {}

    def holds(self, expression: str, node: Any, base: str, resource: Any, root: Any) -> bool:
        """Whether `expression` is true on `node` (an element of type/path `base`)."""
        way = self._ways.get(expression)
        if way is None:
            way = self._ways[expression] = (GUARDS.get(expression), FAST.get(expression), PLAIN.get(expression),
                                            BUNDLE.get(expression))
        guard, fast, plain, bundle = way
        if guard is not None and type(node) is dict and guard.isdisjoint(node):
            return True
        if fast is not None:  # before PLAIN: per-1 is in both, and FAST keeps its answers on odd texts
            answer = fast(node, root)
            if answer is not None:
                return bool(answer)
        if plain is not None and type(node) is dict:
            try:
                return plain(node, base, resource)
            except InvariantError:  # the native path knows fhirpathpy fails on this input, and how
                raise
            except Exception:  # noqa: BLE001, S110 - NotPlain (or any surprise): fhirpathpy answers
                pass
        if bundle is not None:
            answer = bundle(node, resource)
            if answer is not None:
                return answer
        native = self.native(expression)
        if native is not None:
            try:
                return native.holds(node, base, {"resource": resource, "rootResource": root})
            except Exception:  # noqa: BLE001, S110 - fhirpathpy evaluates it again and reports its own error
                pass
        return self.evaluate(expression, node, base, resource, root)

    def native(self, expression: str) -> Compiled | None:
        """The expression compiled to closures (fhirpath_compiled), or None when it is outside that subset."""
        if expression not in self._native:
            self._native[expression] = compile_expression(evaluated(expression), R4, OPTIONS)
        return self._native[expression]

    def evaluate(self, expression: str, node: Any, base: str, resource: Any, root: Any) -> bool:
        """The FHIRPath answer, always through fhirpathpy (what the fast paths are tested against)."""
        compiled = self._compiled.get(expression)
        if compiled is None:
            try:
                compiled = self._compiled[expression] = fhirpathpy.compile(evaluated(expression), R4, OPTIONS)
            except Exception as exc:  # noqa: BLE001 - the parser raises bare Exceptions
                raise InvariantError(f"cannot parse: {exc}") from None
        try:
            start = ResourceNode.create_node(node, base)  # type: ignore[no-untyped-call]
            result = compiled(start, {"resource": resource, "rootResource": root})
        except Exception as exc:  # noqa: BLE001 - fhirpathpy raises bare Exceptions for unsupported functions
            raise InvariantError(str(exc)) from None
        return _truthy(result)


def _truthy(result: list[Any]) -> bool:
    """An invariant holds when its expression evaluates to true (R4 ElementDefinition.constraint: "Condition that
    must evaluate to true"): an empty result fails it, as in the HL7 validator (FHIRPathEngine.convertToBoolean);
    a single boolean decides; any other value passes."""
    if not result:
        return False
    if len(result) == 1 and isinstance(result[0], bool):
        return result[0]
    return True


def _quiet(label: str, value: Any) -> None:
    """FHIRPath trace() output (ref-1 uses it) is not ours to print."""


OPTIONS = {"traceFn": _quiet, "userInvocationTable": {"hasValue": {"fn": _has_value},
                                                        "htmlChecks": {"fn": _html_checks}}}


# --- native fast paths for the base invariants every resource meets -----------------------------
# Each answers exactly as its FHIRPath does, or None to defer to FHIRPath; tests/validation compare
# them on many inputs. Keyed by the full expression, so a profile that rewrites one gets FHIRPath.

def _get(node: Any, key: str) -> Any:
    return node.get(key) if isinstance(node, dict) else None


def _contained(node: Any) -> list[Any]:
    found = _get(node, "contained")
    return found if isinstance(found, list) else []


def _ref_1(node: Any, root: Any) -> bool | None:
    ref = node.get("reference") if isinstance(node, dict) else None  # _get written out: on every Reference
    if not isinstance(ref, str) or not ref.startswith("#") or ref == "#":  # "#" is the container itself
        return True
    return ref[1:] in {_get(c, "id") for c in _contained(root)}


def _dom_3(node: Any, root: Any) -> bool | None:
    """Every contained resource is referenced from the resource (`#id`), or itself refers to its
    container (`#`). fhirpathpy cannot evaluate dom-3 once there are contained resources. As the FHIRPath
    says (`%resource.descendants()`), a reference from another contained resource counts too."""
    contained = _contained(node)
    if not contained:
        return True
    # the `#id` of each contained resource with a text id, looked for among the resource's strings until all are
    # found (a mapped record's one Medication is referenced early): those never found must themselves hold a "#"
    wanted = {f"#{cid}" for c in contained if isinstance(cid := _get(c, "id"), str)}
    if wanted:
        for text in _strings(node):
            if text in wanted:
                wanted.discard(text)
                if not wanted:
                    break
    for c in contained:
        cid = _get(c, "id")
        if isinstance(cid, str) and f"#{cid}" in wanted and "#" not in set(_strings(c)):
            return False
    return True


def _strings(node: Any) -> Iterator[str]:
    """Every string value under `node` (a reference, canonical or uri among them)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            yield current
        elif isinstance(current, dict):
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


#: A dateTime to the second with its offset: two with the same offset order as text (without an offset
#: fhirpathpy reads the local time zone, whose DST hours do not order as text).
SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")


def _per_1(node: Any, root: Any) -> bool | None:
    start, end = _get(node, "start"), _get(node, "end")
    if not isinstance(start, str) or not isinstance(end, str):
        return True
    if len(start) == len(end) == 10:  # two dates of the same precision compare as text
        return start <= end
    first, last = SECONDS.match(start), SECONDS.match(end)
    if first and last and first.group(1) == last.group(1):  # same precision, same offset
        return start <= end
    return None


Fast = Callable[[Any, Any], bool | None]
FAST: dict[str, Fast] = {
    "code.empty() or system.exists()": lambda n, r: _get(n, "code") is None or _get(n, "system") is not None,
    "comparator.empty()": lambda n, r: _get(n, "comparator") is None,
    "reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
    "%rootResource.contained.id.trace('ids'))": _ref_1,
    "contained.contained.empty()": lambda n, r: not any(_contained(c) for c in _contained(n)),
    "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()":
        lambda n, r: not any(_get(_get(c, "meta"), k) is not None for c in _contained(n)
                             for k in ("versionId", "lastUpdated")),
    "contained.meta.security.empty()": lambda n, r: not any(_get(_get(c, "meta"), "security") for c in _contained(n)),
    "text.`div`.exists()": lambda n, r: _get(_get(n, "text"), "div") is not None,
    "start.hasValue().not() or end.hasValue().not() or (start <= end)": _per_1,
}
FAST["contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | "
     "%resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#')"
     ".exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#')"
     ".exists()).not()).trace('unmatched', id).empty()"] = _dom_3


def bundle_path(expression: str) -> Fast | None:
    """The Bundle fast path (bundle_invariants.BUNDLE) that Invariants.holds answers `expression` by, when no guard,
    FAST or PLAIN path comes before it: the generated walk calls it itself (walkers._value), which on bdl-5 and
    bdl-8, once per entry, saves the dispatch. None (defer) from it still goes through holds."""
    if expression in GUARDS or expression in FAST or expression in PLAIN:
        return None
    return BUNDLE.get(expression)


def fast_path(expression: str) -> Fast | None:
    """The FAST path that Invariants.holds answers `expression` by first, when no guard comes before it (ref-1 on
    every Reference, per-1): the generated walk calls it itself (walkers._constraints), sparing the dispatch through
    Values._constraints and holds; None (defer) from it still goes through them. Its answer is taken for its truth,
    as holds takes it."""
    return None if expression in GUARDS else FAST.get(expression)


def _members(*names: str) -> frozenset[str]:
    """The JSON members an element `name` may be given by: its value and its `_name` holder."""
    return frozenset(n for name in names for n in (name, "_" + name))


#: Expressions true on any element that has none of these members, whatever else it holds (FHIRPath evaluates each
#: side of an `or`; none of these can fail there): a Period, Quantity or resource without them skips the rule.
#: tests/validation/test_native_invariants.py evaluates each through fhirpathpy on elements stripped of them.
GUARDS: dict[str, frozenset[str]] = {
    "contained.contained.empty()": _members("contained"),
    "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()": _members("contained"),
    "contained.meta.security.empty()": _members("contained"),
    next(e for e in FAST if e.startswith("contained.where(")): _members("contained"),
    "comparator.empty()": _members("comparator"),
    "code.empty() or system.exists()": _members("code"),
    "duration.empty() or durationUnit.exists()": _members("duration"),
    "period.empty() or periodUnit.exists()": _members("period"),
    "duration.exists() implies duration >= 0": _members("duration"),
    "period.exists() implies period >= 0": _members("period"),
    "periodMax.empty() or period.exists()": _members("periodMax"),
    "durationMax.empty() or duration.exists()": _members("durationMax"),
    "countMax.empty() or count.exists()": _members("countMax"),
    "offset.empty() or (when.exists() and when.select($this in ('C' | 'CM' | 'CD' | 'CV')).allFalse())":
        _members("offset"),
    "timeOfDay.empty() or when.empty()": _members("timeOfDay"),
    "code.exists() implies ((system = %ucum) and value.exists())": _members("code"),
    "low.empty() or high.empty() or (low <= high)": _members("low"),
    "detail.empty() or reference.empty()": _members("detail"),
    "dataAbsentReason.empty() or value.empty()": _members("dataAbsentReason"),
}
