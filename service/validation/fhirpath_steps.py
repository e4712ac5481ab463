"""The steps compiled FHIRPath (fhirpath_compiled) is made of: member navigation, operand typing and the
commonest functions and comparisons, each doing what fhirpathpy does for the same input, only directly."""
from __future__ import annotations

import operator
import re
from collections import abc
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fhirpathpy.engine import param_check_table, util
from fhirpathpy.engine.evaluators import evaluators
from fhirpathpy.engine.nodes import FP_Quantity, ResourceNode

Ctx = dict[str, Any]
Fn = Callable[[Ctx, list[Any]], list[Any]]


# --- the commonest functions, written out: each does what its fhirpathpy function does, given what
# fhirpathpy's doInvoke passes it (a list, and for a macro a function of one item that sets $this) ---------

Macro = Callable[[Ctx, list[Any]], Callable[[Any], list[Any]]]


def _exists(ctx: Ctx, data: list[Any]) -> list[Any]:
    return [len(data) != 0]


def _empty(ctx: Ctx, data: list[Any]) -> list[Any]:
    return [len(data) == 0]


def _count(ctx: Ctx, data: list[Any]) -> list[Any]:
    return [len(data)]


def _not(ctx: Ctx, data: list[Any]) -> list[Any]:
    """not_fn: one boolean negated, any other single value counts as true, else empty."""
    if len(data) != 1:
        return []
    value = util.get_data(data[0])  # type: ignore[no-untyped-call]
    return [not value] if isinstance(value, bool) else [False]


def _where(macro: Macro) -> Fn:
    def where(ctx: Ctx, data: list[Any]) -> list[Any]:
        expr = macro(ctx, ctx["$this"] if "$this" in ctx else ctx["dataRoot"])
        kept = []
        for i, item in enumerate(data):
            ctx["$index"] = i
            result = expr(item)
            if result and result[0]:  # check_macro_expr: the first value's Python truth (a node is true)
                kept.append(item)
        return kept
    return where


def _exists_where(macro: Macro) -> Fn:
    where = _where(macro)
    return lambda ctx, data: [len(where(ctx, data)) != 0]


def _all(macro: Macro) -> Fn:
    def all_(ctx: Ctx, data: list[Any]) -> list[Any]:
        expr = macro(ctx, ctx["$this"] if "$this" in ctx else ctx["dataRoot"])
        for i, item in enumerate(data):
            ctx["$index"] = i
            if not util.is_true(expr(item)):  # type: ignore[no-untyped-call]
                return [False]
        return [True]
    return all_


SPECIAL: dict[tuple[str, int], Callable[..., Fn]] = {
    ("exists", 0): lambda: _exists, ("empty", 0): lambda: _empty, ("count", 0): lambda: _count,
    ("not", 0): lambda: _not, ("where", 1): _where, ("exists", 1): _exists_where, ("all", 1): _all,
}


# --- ordering of two temporal elements ------------------------------------------------------------------
# fhirpathpy (with fhirpath_fixes) turns both into FP_DateTime and compares them field by field, about
# 0.1 ms each time; per-1 and our ket-4/ket-11 do it for every Period. Two values of the same shape need
# none of that: two dates (YYYY-MM-DD) order as text, two dateTimes to the second with offsets order as
# instants. Any other pair goes the long way. tests/validation/test_fhirpath_compiled.py compares the two.

ORDER: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                ">=": operator.ge}
TEMPORAL = {"date", "dateTime", "instant"}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})$")


def temporal_order(order: Callable[[Any, Any], bool], a: Any, b: Any) -> bool | None:
    if not (type(a) is list and type(b) is list and len(a) == 1 and len(b) == 1):
        return None
    x, y = a[0], b[0]
    if not (type(x) is ResourceNode and type(y) is ResourceNode and x.path in TEMPORAL and y.path in TEMPORAL):
        return None
    return text_order(x.data, y.data, order)


def text_order(first: Any, second: Any, order: Callable[[Any, Any], bool] = operator.ge) -> bool | None:
    """`first <op> second` on two temporal texts of the same shape (two dates, or two dateTimes to the second
    with offsets); None for any other pair."""
    if not (isinstance(first, str) and isinstance(second, str)):
        return None
    try:
        if DATE.match(first) and DATE.match(second):
            date.fromisoformat(first), date.fromisoformat(second)  # 2026-02-30: fhirpathpy fails on it
            return order(first, second)
        if SECONDS.match(first) and SECONDS.match(second):
            return order(datetime.fromisoformat(first.replace("Z", "+00:00")),
                         datetime.fromisoformat(second.replace("Z", "+00:00")))
    except ValueError:  # no such day or hour: left to fhirpathpy, which reports it
        return None
    return None


def numeric_order(order: Callable[[Any, Any], bool], a: Any, b: Any) -> bool | None:
    """Two single numbers (`value >= 0`): what equality.typecheck and the comparison make of them after
    util.get_data (a JSON float becomes a Decimal of its text), without the detour; None for anything else."""
    if not (type(a) is list and type(b) is list and len(a) == 1 and len(b) == 1):
        return None
    x, y = util.get_data(a[0]), util.get_data(b[0])  # type: ignore[no-untyped-call]
    if type(x) in NUMBERS and type(y) in NUMBERS:
        return order(x, y)
    return None


NUMBERS = {int, Decimal}  # util.is_number's, less complex (which orders nothing) and bool (type(True) is bool)


def at(ctx: Ctx, parent: list[Any], body: Fn) -> list[Any]:
    ctx["$this"] = parent  # as make_param does: an operand sees its parent as $this
    return body(ctx, parent)


def typed(kind: Any, res: list[Any]) -> Any:
    """make_param's conversion of an evaluated operand to its declared type."""
    if kind == "Any":
        return res
    if kind == BOOLEANS and len(res) == 1:  # and/or/implies/xor: check_boolean_param on the one value
        value = res[0].data if type(res[0]) is ResourceNode else res[0]
        if value is True or value is False:
            return value
    if isinstance(kind, list):
        if not res:
            return []
        kind = kind[0]
    if len(res) > 1:
        raise ValueError(f"expected a singleton {kind}")
    if not res:
        return []
    return make_param_check(kind, res[0])


BOOLEANS = ["Boolean"]


def make_param_check(kind: str, value: Any) -> Any:
    check: Callable[[Any], Any] | None = param_check_table.get(kind)
    if check is None:
        raise ValueError(f"no check for {kind}")
    return check(value)


def is_string_literal(node: dict[str, Any]) -> bool:
    while node.get("type") in ("TermExpression", "LiteralTerm") and node.get("children"):
        node = node["children"][0]
    return node.get("type") == "StringLiteral"


def string_equality(left: Fn, raw: dict[str, Any], equal: bool) -> Fn:
    """`path = 'text'`, the commonest comparison, as equality.equal does it: different lengths are unequal,
    else `x[0] == literal` on the element's data (a Quantity element first becomes an FP_Quantity: deferred)."""
    node = raw
    while node.get("type") != "StringLiteral":
        node = node["children"][0]
    (literal,) = evaluators["StringLiteral"](None, None, node)

    def compare(ctx: Ctx, data: list[Any]) -> list[Any]:
        a = at(ctx, data, left)
        if not a:
            return []
        if len(a) != 1:
            return [not equal]
        item = a[0]
        value = item.data if isinstance(item, ResourceNode) else item
        if isinstance(value, dict) and isinstance(item, ResourceNode) and item.path != "Quantity":
            return [not equal]  # an object (`$this = 'code'` on a CodeableConcept) never equals text
        if isinstance(value, (dict, list, FP_Quantity)) or not isinstance(value, (str, int, bool, Decimal)):
            raise Defer
        return [(value == literal) is equal]
    return compare


class Defer(Exception):
    """This input needs fhirpathpy itself."""


class Navigator:
    """Member navigation as fhirpathpy's create_reduce_member_invocation does it, with the model lookups
    done once per parent type rather than per item."""

    def __init__(self, model: dict[str, Any], key: str) -> None:
        self.model, self.key = model, key
        self._paths: dict[str | None, tuple[str, list[str] | None, dict[str, int]]] = {}

    def _child(self, path: str | None) -> tuple[str, list[str] | None, dict[str, int]]:
        """The child's path, its choice types if it is a choice, and the JSON names of those (`valueQuantity`,
        `_valueQuantity`) → the choice's position: an object is searched by its few keys, not by every choice."""
        found = self._paths.get(path)
        if found is None:
            child = f"{path}.{self.key}" if path else f"_.{self.key}"
            child = self.model["pathsDefinedElsewhere"].get(child, child)
            choices = self.model["choiceTypePaths"].get(child)
            names: dict[str, int] = {}
            for i, choice in enumerate(choices or ()):
                names.setdefault(self.key + choice, i)
                names.setdefault("_" + self.key + choice, i)
            found = self._paths[path] = (child, choices, names)
        return found

    def navigate(self, ctx: Ctx, data: list[Any]) -> list[Any]:
        if not isinstance(data, list):
            return []
        out: list[Any] = []
        key = self.key
        path2type = self.model["path2Type"]
        for res in data:
            if type(res) is not ResourceNode:
                res = ResourceNode.create_node(res)  # type: ignore[no-untyped-call]
            child, choices, names = self._child(res.path)
            value = extension = None
            item = res.data
            if type(item) is dict:  # JSON objects: the branches below, without abc.Mapping's slow check
                if choices:  # the first choice, in the model's order, with a value or an extension
                    first = None
                    for name in item:
                        i = names.get(name)
                        if i is not None and (first is None or i < first) and item[name] is not None:
                            first = i
                    if first is not None:
                        choice = choices[first]
                        value, extension = item.get(key + choice), item.get("_" + key + choice)
                        child += choice
                else:
                    value, extension = item.get(key), item.get("_" + key)
                    if key == "extension":
                        child = "Extension"
                child = path2type.get(child, child)
                for found in (value, extension):  # _add, inlined: most members hold one value or none
                    if type(found) is list:
                        out.extend(_node(x, child) for x in found)
                    elif found is not None and found != []:
                        out.append(_node(found, child))
                continue
            if isinstance(item, FP_Quantity):
                value = item.value
            if choices and isinstance(item, abc.Mapping):
                for choice in choices:
                    field = key + choice
                    value, extension = item.get(field), item.get("_" + field)
                    if value is not None or extension is not None:
                        child += choice
                        break
            elif isinstance(item, abc.Mapping):
                value, extension = item.get(key), item.get("_" + key)
                if key == "extension":
                    child = "Extension"
            elif key == "length":
                value = len(item)
            child = path2type.get(child, child)
            _add(out, value, child)
            _add(out, extension, child)
        return out


def _add(out: list[Any], value: Any, path: str) -> None:
    if value is None or value == []:
        return
    if type(value) is list:
        out.extend(_node(x, path) for x in value)
    else:
        out.append(_node(value, path))


def _node(data: Any, path: str) -> ResourceNode:
    """ResourceNode(data, path) without its abc.Mapping check: JSON objects are dicts."""
    node: ResourceNode = object.__new__(ResourceNode)
    node.path = data["resourceType"] if type(data) is dict and "resourceType" in data else path
    node.data, node._data, node.propName, node.index = data, None, None, None
    return node
