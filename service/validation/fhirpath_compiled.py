"""FHIRPath compiled to Python closures: fhirpathpy's own semantics, without its interpreter's overhead.

fhirpathpy walks the parse tree on every evaluation: a dispatch per node, a merged copy of its function
registry per call, reduce() and ResourceNode wrappers for every step. Here each parse-tree node becomes a
closure once, the registry is merged once, and member navigation is done natively with the same rules
(choice types, `_field` extensions, type names from the model). Functions and operators are fhirpathpy's
own, called the way its engine calls them, except the commonest ones, written out in fhirpath_steps; the
answers are its answers, and tests/validation compare the two on every constraint of the corpus.
Anything outside the subset below is not compiled (Unsupported), and an input that raises is handed back
to fhirpathpy, which then reports the error as before.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhirpathpy.engine import type_specifier, util
from fhirpathpy.engine.evaluators import evaluators
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.parser import parse

from service.validation.fhirpath_steps import (
    BOOLEANS,
    ORDER,
    SPECIAL,
    Ctx,
    Fn,
    Navigator,
    at,
    is_string_literal,
    numeric_order,
    string_equality,
    temporal_order,
    typed,
)

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
        # a property named by one of `reads`, its `_name` holder, or a choice type's `nameType` (prefix: a superset)
        self._mentioned = re.compile("_*+(?:" + "|".join(map(re.escape, self.reads)) + ")").match \
            if self.reads else None
        self._absent: dict[tuple[str, Any], bool] = {}

    def holds(self, node: Any, base: str, variables: dict[str, Any]) -> bool:
        """The invariant's verdict on `node`. When the expression reads the node only through member names
        (`reads`) and the node has none of them, the answer cannot depend on the node: it is the answer on an
        empty node of the same type, computed once."""
        if self.reads is not None and isinstance(node, dict) and not (self._mentioned and
                                                                      any(map(self._mentioned, node))):
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
    holders dropped, as its output does); empty fails (invariants.py's `_truthy`), one boolean decides, anything
    else passes."""
    values = []
    for item in result:
        data = util.get_data(item)  # type: ignore[no-untyped-call]
        if isinstance(data, dict) and list(data.keys()) == ["extension"]:
            continue
        values.append(data)
    if len(values) == 1 and isinstance(values[0], bool):
        return values[0]
    return bool(values)


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
        return Navigator(self.owner.model, key).navigate

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
        if kind == "Any":  # typed() leaves it as it is
            def any_(ctx: Ctx, parent: list[Any]) -> Any:
                ctx["$this"] = parent
                return body(ctx, parent)
            return any_
        if kind == BOOLEANS:  # and/or/implies/xor: one boolean is the common case, typed() does the rest
            def boolean(ctx: Ctx, parent: list[Any]) -> Any:
                ctx["$this"] = parent
                res = body(ctx, parent)
                if len(res) == 1:
                    value = res[0].data if type(res[0]) is ResourceNode else res[0]
                    if value is True or value is False:
                        return value
                return typed(kind, res)
            return boolean
        return lambda ctx, parent: typed(kind, at(ctx, parent, body))

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
            if order is not None and ((known := temporal_order(order, a, b)) is not None
                                      or (known := numeric_order(order, a, b)) is not None):
                return [known]
            if nullable and (a is None or isinstance(a, list) and not a or b is None or isinstance(b, list) and not b):
                return []  # util.is_nullable
            result = fn(ctx, a, b)
            return result if isinstance(result, list) else [] if result is None else [result]  # util.arraify
        if op in EQUALITY and is_string_literal(raw[1]):
            return string_equality(self.expression(raw[0]), raw[1], op == "=")
        return infix


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


def compile_expression(expression: str, model: dict[str, Any], options: dict[str, Any]) -> Compiled | None:
    """The compiled form, or None when the expression is outside the subset."""
    try:
        return Compiled(expression, model, options)
    except Unsupported:
        return None
