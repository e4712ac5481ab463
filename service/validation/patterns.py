"""A pattern[x] turned once into a test of values: fhirjson.matches_pattern's answer, without its recursion through
generators on every value (a bp panel's components are told apart by the pattern of their code)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

Test = Callable[[Any], bool]


def pattern_test(pattern: Any) -> Test:
    """matches_pattern(value, pattern) as a function of the value: an object's scalar members compared in line, its
    objects and arrays by their own tests; each item of an array pattern matched by some item of the value's."""
    if isinstance(pattern, dict):
        scalars = tuple((k, v) for k, v in pattern.items() if not isinstance(v, (dict, list)))
        nested = tuple((k, pattern_test(v)) for k, v in pattern.items() if isinstance(v, (dict, list)))

        def members(value: Any) -> bool:
            if not isinstance(value, dict):
                return False
            for key, wanted in scalars:
                if key not in value or value[key] != wanted:
                    return False
            for key, test in nested:  # noqa: SIM110 - a loop: no generator made per value
                if key not in value or not test(value[key]):
                    return False
            return True
        return members
    if isinstance(pattern, list):
        tests = tuple(pattern_test(p) for p in pattern)

        def items(value: Any) -> bool:
            if not isinstance(value, list):
                return False
            for test in tests:  # noqa: SIM110 - a loop: no generator made per value
                if not any(map(test, value)):
                    return False
            return True
        return items

    def equal(value: Any) -> bool:
        return bool(value == pattern)
    return equal


#: the tests made, by id() of their pattern, each kept with it (so an id is never reused while kept); bounded, as a
#: profile validated against could be given (a module's, not the validator's: its instance dict is at the size
#: CPython shares keys up to, and one more attribute makes every attribute of it slower to read)
TESTS_KEPT = 10_000
_TESTS: dict[int, tuple[Any, Test]] = {}


def remembered(pattern: Any) -> Test:
    """The test of `pattern` (a plan's pattern[x] value), made once."""
    known = _TESTS.get(id(pattern))
    if known is None:
        if len(_TESTS) >= TESTS_KEPT:
            _TESTS.clear()
        known = _TESTS[id(pattern)] = (pattern, pattern_test(pattern))
    return known[1]
