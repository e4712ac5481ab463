"""JSON documents from untrusted bytes: UTF-8, no NaN, no repeated keys, bounded nesting, array length and size
(values in all), no NUL in strings."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn

from service.errors import BadRequest, PayloadTooLarge, Unprocessable

#: the longest array accepted: no FHIR resource or record of ours needs more (a batch or transaction Bundle's entries
#: have their own limit, Settings.bundle_json_limits); 200,000 empty notes (600 KB) once cost the validator 9–16 s and
#: an 89 MB OperationOutcome
DEFAULT_MAX_ITEMS = 1_000
#: values (objects, arrays, strings, numbers...) in one document other than a batch or transaction (whose limit grows
#: with its entries): our largest resource holds under 100; the validator spends up to about 90 µs on each (2 s in
#: all) on this busy 2-core machine
DEFAULT_MAX_VALUES = 20_000


def parse_json(raw: bytes, max_depth: int, max_items: int = DEFAULT_MAX_ITEMS,
               max_values: int = DEFAULT_MAX_VALUES) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"The text is not UTF-8 (byte {exc.start}).") from None
    if not text.strip():
        raise BadRequest("The document is empty; send a JSON object.")
    try:
        doc = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
    except RecursionError:
        _too_deep(max_depth)
    _check_shape(doc, max_depth, max_items, max_values)
    if "\\u0000" in text and _holds(doc, _nul):  # well-formed, but no FHIR string or record field holds one
        raise Unprocessable("The JSON holds a NUL character (\\u0000) in a string; PostgreSQL cannot store it.")
    # only an escape makes one: UTF-8 cannot carry a surrogate, and json.loads joins an escaped pair into one character
    if ("\\ud" in text or "\\uD" in text) and _holds(doc, _lone_surrogate):
        raise BadRequest("A string holds a lone surrogate (a \\ud800-\\udfff escape without its pair): it is not "
                         "Unicode text, and no FHIR string or record field can hold it.")
    return doc


def _nul(text: str) -> bool:
    return "\x00" in text


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _holds(doc: Any, odd: Callable[[str], bool]) -> bool:
    """Whether a string of `doc`, a member's name or a value, is `odd`."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str) and odd(node):
            return True
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _check_shape(doc: Any, max_depth: int, max_items: int, max_values: int) -> None:
    """Refuse, before anything walks it, a document nested too deep, with too long an array or too many values."""
    if not _within(doc, max_depth, max_items, max_values):
        _refuse_shape(doc, max_depth, max_items, max_values)


def _within(doc: Any, max_depth: int, max_items: int, max_values: int) -> bool:
    """Whether `doc` keeps every limit _refuse_shape holds it to, walking its objects and arrays only (counting their
    members by len): a document's values are mostly strings and numbers, each once a step of that walk (~60 µs of a
    served create's CPU, now less than half)."""
    values = 1
    if values > max_values:
        return False
    stack = [(doc, 1)] if isinstance(doc, dict | list) else []
    while stack:
        node, level = stack.pop()
        if level > max_depth:
            return False
        if isinstance(node, dict):
            children: Any = node.values()
        else:
            if len(node) > max_items:
                return False
            children = node
        values += len(children)
        if values > max_values:
            return False
        stack.extend([(child, level + 1) for child in children if isinstance(child, dict | list)])
    return True


def _refuse_shape(doc: Any, max_depth: int, max_items: int, max_values: int) -> None:
    """Raise what a document beyond a limit is refused for: the first limit a walk of every value meets (_within finds
    whether there is one; this walk, which says which, is the one the refusals have always come from)."""
    stack, values = [(doc, 1)], 0
    while stack:
        node, level = stack.pop()
        values += 1
        if values > max_values:
            raise PayloadTooLarge(f"The JSON holds more than {max_values} values; send smaller documents.")
        if isinstance(node, dict | list):
            if level > max_depth:
                _too_deep(max_depth)
            if isinstance(node, list) and len(node) > max_items:
                raise PayloadTooLarge(f"A JSON array holds {len(node)} items; the limit is {max_items} items.")
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))


def depth(doc: Any) -> int:
    """Nesting depth of containers (a scalar is 0, `{}` is 1), without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _too_deep(max_depth: int) -> NoReturn:
    raise BadRequest(f"The JSON is nested more than {max_depth} levels deep.")


def _no_constant(name: str) -> NoReturn:
    raise BadRequest(f"{name} is not valid JSON.")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The object of `pairs`, made by dict (in C); only if it came out shorter was a key repeated: then found which."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadRequest(f"The JSON object repeats the key {key!r}.")
            seen.add(key)
    return out
