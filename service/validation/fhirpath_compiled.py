"""FHIRPath compiled to Python closures: fhirpathpy's own semantics, without its interpreter's overhead.

fhirpathpy walks the parse tree on every evaluation: a dispatch per node, a merged copy of its function
registry per call, reduce() and ResourceNode wrappers for every step. Here each parse-tree node becomes a
closure once, the registry is merged once, and member navigation is done natively with the same rules
(choice types, `_field` extensions, type names from the model). Functions and operators are fhirpathpy's
own, called the way its engine calls them, so the answers are its answers; tests/validation compare the two
on every constraint of the corpus. Anything outside the subset below is not compiled (Unsupported), and an
input that raises is handed back to fhirpathpy, which then reports the error as before.
"""
from __future__ import annotations

import operator
import re
from collections import abc
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fhirpathpy.engine import param_check_table, type_specifier, util
from fhirpathpy.engine.evaluators import evaluators
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.engine.nodes import FP_Quantity, ResourceNode
from fhirpathpy.parser import parse

Ctx = dict[str, Any]
Fn = Callable[[Ctx, list[Any]], list[Any]]
#: Functions evaluated here: no clock (now, today), no terminology or resolve(), nothing that reads
#: ctx beyond $this, $index, vars and traceFn.
FUNCTIONS = {"exists", "empty", "not", "count", "where", "all", "select", "first", "startsWith", "matches",
             "contains", "hasValue", "ofType", "allFalse", "allTrue", "isDistinct", "trace", "length", "is",
             "as", "htmlChecks", "toInteger", "tail", "substring", "toString", "intersect", "combine",
             "distinct", "last", "iif", "children", "descendants", "extension", "lower", "upper"}
OPERATORS = {"OrExpression", "AndExpression", "ImpliesExpression", "XorExpression", "EqualityExpression",
             "InequalityExpression", "UnionExpression", "AdditiveExpression", "MultiplicativeExpression"}
ALIASES = {"MembershipExpression": {"contains": "containsOp", "in": "inOp"},
           "TypeExpression": {"is": "isOp", "as": "asOp"}}
VARIABLES = {"resource", "rootResource", "context", "ucum"}
EQUALITY = {"=", "!="}


class Unsupported(Exception):
    """The expression uses FHIRPath this compiler does not cover: evaluate it with fhirpathpy."""


class Compiled:
    """One expression, compiled; `evaluate` answers as fhirpathpy.compile(...)(node, vars) would."""

    def __init__(self, expression: str, model: dict[str, Any], options: dict[str, Any]) -> None:
        self.model = model
        self.registry = {**invocation_registry, **util.process_user_invocation_table(  # type: ignore[no-untyped-call]
            options.get("userInvocationTable", {}))}
        self.trace = options.get("traceFn")
        tree = parse(expression)["children"][0]  # type: ignore[no-untyped-call]
        self.root = _Compiler(self).expression(tree)
        self.reads = _focus_names(tree)
        self._absent: dict[tuple[str, Any], bool] = {}

    def holds(self, node: Any, base: str, variables: dict[str, Any]) -> bool:
        """The invariant's verdict on `node`. When the expression reads the node only through member names
        (`reads`) and the node has none of them, the answer cannot depend on the node: it is the answer on an
        empty node of the same type, computed once."""
        if self.reads is not None and isinstance(node, dict) and not _mentions(node, self.reads):
            kind = node.get("resourceType")
            key = (base, kind)
            found = self._absent.get(key)
            if found is None:
                empty = {"resourceType": kind} if kind is not None else {}
                found = self._absent[key] = verdict(self.evaluate(empty, base, variables))
            return found
        return verdict(self.evaluate(node, base, variables))

    def evaluate(self, node: Any, base: str, variables: dict[str, Any]) -> list[Any]:
        start = ResourceNode.create_node(node, base)  # type: ignore[no-untyped-call]
        data_root = [start]
        ctx: Ctx = {"dataRoot": data_root, "vars": {"context": start, "ucum": "http://unitsofmeasure.org",
                                                    **variables},
                    "model": self.model, "userInvocationTable": {}, "traceFn": self.trace}
        return self.root(ctx, data_root)


def verdict(result: list[Any]) -> bool:
    """What fhirpathpy's final result means for an invariant: its top-level values (primitive-extension
    holders dropped, as its output does); empty passes, one boolean decides, anything else passes."""
    values = []
    for item in result:
        data = util.get_data(item)  # type: ignore[no-untyped-call]
        if isinstance(data, dict) and list(data.keys()) == ["extension"]:
            continue
        values.append(data)
    if len(values) == 1 and isinstance(values[0], bool):
        return values[0]
    return True


class _Compiler:
    def __init__(self, owner: Compiled) -> None:
        self.owner = owner

    def expression(self, node: dict[str, Any]) -> Fn:
        kind = node.get("type")
        if kind in ("TermExpression", "InvocationTerm", "ParenthesizedTerm"):
            return self.expression(node["children"][0])
        if kind == "LiteralTerm":
            return self._literal(node)
        if kind == "ExternalConstantTerm":
            return self._variable(node)
        if kind == "InvocationExpression":
            return self._chain(node)
        if kind == "MemberInvocation":
            return self._member(node)
        if kind == "FunctionInvocation":
            return self._function(node["children"][0])
        if kind == "ThisInvocation":
            return lambda ctx, data: util.arraify(ctx["$this"])  # type: ignore[no-untyped-call]
        if kind in OPERATORS:
            return self._infix(node["terminalNodeText"][0], node["children"])
        if kind in ALIASES:
            op = ALIASES[kind].get(node["terminalNodeText"][0])
            if op is None:
                raise Unsupported(node["terminalNodeText"][0])
            return self._infix(op, node["children"])
        raise Unsupported(str(kind))

    def _literal(self, node: dict[str, Any]) -> Fn:
        term = node["children"][0]
        if term["type"] not in ("StringLiteral", "NumberLiteral", "BooleanLiteral"):
            raise Unsupported(term["type"])
        (value,) = evaluators[term["type"]](None, None, term)
        return lambda ctx, data: [value]

    def _variable(self, node: dict[str, Any]) -> Fn:
        name = node["children"][0]["children"][0]["text"].strip('"').replace("`", "")
        if name not in VARIABLES:
            raise Unsupported(f"%{name}")

        def variable(ctx: Ctx, data: list[Any]) -> list[Any]:
            value = ctx["vars"][name]
            return [] if value is None else value if isinstance(value, list) else [value]
        return variable

    def _chain(self, node: dict[str, Any]) -> Fn:
        steps = [self.expression(child) for child in node["children"]]

        def chain(ctx: Ctx, data: list[Any]) -> list[Any]:
            for step in steps:
                data = step(ctx, data)
            return list(data)
        return chain

    def _member(self, node: dict[str, Any]) -> Fn:
        key = evaluators["Identifier"](None, None, node["children"][0])[0].replace("`", "")
        if key[:1].isupper():  # a type name filters resources: not used by constraints
            raise Unsupported(key)
        return _Navigator(self.owner.model, key).navigate

    def _function(self, functn: dict[str, Any]) -> Fn:
        name = functn["children"][0]["text"]
        if name not in FUNCTIONS or name not in self.owner.registry:
            raise Unsupported(name)
        invocation = self.owner.registry[name]
        raw = functn["children"][1]["children"] if len(functn["children"]) > 1 else []
        if (name, len(raw)) in SPECIAL:
            return SPECIAL[name, len(raw)](*[self._param("Expr", p) for p in raw])
        arity = invocation.get("arity")
        if arity is None and raw or arity is not None and len(raw) not in arity:
            raise Unsupported(f"{name} with {len(raw)} parameters")
        types = arity[len(raw)] if arity is not None else []
        if name == "trace":
            raw, types = raw[:1], types[:1]
        params = [self._param(t, p) for t, p in zip(types, raw, strict=True)]
        fn = invocation["fn"]
        nullable_input, nullable = "nullable_input" in invocation, "nullable" in invocation

        def call(ctx: Ctx, data: list[Any]) -> list[Any]:
            if nullable_input and util.is_nullable(data):  # type: ignore[no-untyped-call]
                return []
            this = ctx["$this"] if "$this" in ctx else ctx["dataRoot"]
            args = [param(ctx, this) for param in params]
            if arity is None:
                return util.arraify(fn(ctx, util.arraify(data)))  # type: ignore[no-any-return,no-untyped-call]
            if nullable and any(util.is_nullable(a) for a in (ctx, data, *args)):  # type: ignore[no-untyped-call]
                return []
            return util.arraify(fn(ctx, data, *args))  # type: ignore[no-any-return,no-untyped-call]
        return call

    def _param(self, kind: Any, raw: dict[str, Any]) -> Callable[[Ctx, list[Any]], Any]:
        """A parameter as fhirpathpy's make_param prepares it, evaluated against `parent`."""
        if kind == "Expr":
            body = self.expression(raw)

            def macro(ctx: Ctx, parent: list[Any]) -> Callable[[Any], list[Any]]:
                def expr(data: Any) -> list[Any]:
                    ctx["$this"] = this = util.arraify(data)  # type: ignore[no-untyped-call]
                    return body(ctx, this)
                return expr
            return macro
        if kind == "TypeSpecifier":
            spec = type_specifier(None, None, raw)  # type: ignore[no-untyped-call]
            return lambda ctx, parent: spec
        if kind == "Identifier":
            raise Unsupported("identifier parameter")
        body = self.expression(raw)
        if kind == "AnyAtRoot":
            def at_root(ctx: Ctx, parent: list[Any]) -> Any:
                this = ctx["$this"] = ctx["$this"] if "$this" in ctx else ctx["dataRoot"]
                return body(ctx, this)
            return at_root
        return lambda ctx, parent: _typed(kind, _at(ctx, parent, body))

    def _infix(self, op: str, raw: list[dict[str, Any]]) -> Fn:
        invocation = self.owner.registry.get(op)
        if invocation is None or "fn" not in invocation or len(raw) != 2:
            raise Unsupported(op)
        (left_type, right_type), fn = invocation["arity"][2], invocation["fn"]
        left, right = self._param(left_type, raw[0]), self._param(right_type, raw[1])
        nullable = "nullable" in invocation

        order = ORDER.get(op)

        def infix(ctx: Ctx, data: list[Any]) -> list[Any]:
            a, b = left(ctx, data), right(ctx, data)
            if order is not None and (known := _temporal_order(order, a, b)) is not None:
                return [known]
            if nullable and (util.is_nullable(a) or util.is_nullable(b)):  # type: ignore[no-untyped-call]
                return []
            return util.arraify(fn(ctx, a, b))  # type: ignore[no-any-return,no-untyped-call]
        if op in EQUALITY and _is_string_literal(raw[1]):
            return _string_equality(self.expression(raw[0]), raw[1], op == "=")
        return infix


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


def _temporal_order(order: Callable[[Any, Any], bool], a: Any, b: Any) -> bool | None:
    if not (type(a) is list and type(b) is list and len(a) == 1 and len(b) == 1):
        return None
    x, y = a[0], b[0]
    if not (type(x) is ResourceNode and type(y) is ResourceNode and x.path in TEMPORAL and y.path in TEMPORAL):
        return None
    first, second = x.data, y.data
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


def _at(ctx: Ctx, parent: list[Any], body: Fn) -> list[Any]:
    ctx["$this"] = parent  # as make_param does: an operand sees its parent as $this
    return body(ctx, parent)


def _typed(kind: Any, res: list[Any]) -> Any:
    """make_param's conversion of an evaluated operand to its declared type."""
    if kind == "Any":
        return res
    if isinstance(kind, list):
        if not res:
            return []
        kind = kind[0]
    if len(res) > 1:
        raise ValueError(f"expected a singleton {kind}")
    if not res:
        return []
    return make_param_check(kind, res[0])


def make_param_check(kind: str, value: Any) -> Any:
    check: Callable[[Any], Any] | None = param_check_table.get(kind)
    if check is None:
        raise ValueError(f"no check for {kind}")
    return check(value)


def _is_string_literal(node: dict[str, Any]) -> bool:
    while node.get("type") in ("TermExpression", "LiteralTerm") and node.get("children"):
        node = node["children"][0]
    return node.get("type") == "StringLiteral"


def _string_equality(left: Fn, raw: dict[str, Any], equal: bool) -> Fn:
    """`path = 'text'`, the commonest comparison, as equality.equal does it: different lengths are unequal,
    else `x[0] == literal` on the element's data (a Quantity element first becomes an FP_Quantity: deferred)."""
    node = raw
    while node.get("type") != "StringLiteral":
        node = node["children"][0]
    (literal,) = evaluators["StringLiteral"](None, None, node)

    def compare(ctx: Ctx, data: list[Any]) -> list[Any]:
        a = _at(ctx, data, left)
        if not a:
            return []
        if len(a) != 1:
            return [not equal]
        item = a[0]
        value = item.data if isinstance(item, ResourceNode) else item
        if isinstance(value, dict) and isinstance(item, ResourceNode) and item.path != "Quantity":
            return [not equal]  # an object (`$this = 'code'` on a CodeableConcept) never equals text
        if isinstance(value, (dict, list, FP_Quantity)) or not isinstance(value, (str, int, bool, Decimal)):
            raise _Defer
        return [(value == literal) is equal]
    return compare


class _Defer(Exception):
    """This input needs fhirpathpy itself."""


class _Navigator:
    """Member navigation as fhirpathpy's create_reduce_member_invocation does it, with the model lookups
    done once per parent type rather than per item."""

    def __init__(self, model: dict[str, Any], key: str) -> None:
        self.model, self.key = model, key
        self._paths: dict[str | None, tuple[str, list[str] | None]] = {}

    def _child(self, path: str | None) -> tuple[str, list[str] | None]:
        found = self._paths.get(path)
        if found is None:
            child = f"{path}.{self.key}" if path else f"_.{self.key}"
            child = self.model["pathsDefinedElsewhere"].get(child, child)
            found = self._paths[path] = (child, self.model["choiceTypePaths"].get(child))
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
            child, choices = self._child(res.path)
            value = extension = None
            item = res.data
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


def _focus_names(tree: dict[str, Any]) -> tuple[str, ...] | None:
    """Every member name in the expression, when members are the only way it reads its focus: no $this,
    no %variables, no function applied to the focus itself (hasValue(), children(), empty() …)."""
    names: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        kind = node.get("type")
        if kind in ("ThisInvocation", "ExternalConstantTerm", "IndexInvocation", "TotalInvocation"):
            return None
        if kind == "TermExpression" and node["children"][0].get("type") == "InvocationTerm" \
                and node["children"][0]["children"][0].get("type") == "FunctionInvocation":
            return None  # a chain that starts with a function: it applies to the focus (or to $this)
        if kind == "MemberInvocation":
            names.add(node["children"][0]["text"].strip("`"))
        stack.extend(node.get("children", []))
    return tuple(sorted(names))


def _mentions(node: dict[str, Any], names: tuple[str, ...]) -> bool:
    """Whether any property of `node` can be reached by one of `names`: the name itself, its `_name`
    extension holder, or a choice type's `nameType` (prefix match, a superset)."""
    return any(key.lstrip("_").startswith(names) for key in node)


def compile_expression(expression: str, model: dict[str, Any], options: dict[str, Any]) -> Compiled | None:
    """The compiled form, or None when the expression is outside the subset."""
    try:
        return Compiled(expression, model, options)
    except Unsupported:
        return None
