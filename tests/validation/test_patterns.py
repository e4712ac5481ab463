"""patterns.pattern_test: a pattern[x] made a test once answers as fhirjson.matches_pattern on every value, odd JSON
(other types, nulls, True against 1, arrays against objects, members missing or extra) included."""
from __future__ import annotations

import itertools
import random
from decimal import Decimal
from typing import Any

from service.fhirjson import matches_pattern
from service.validation import patterns
from service.validation.patterns import pattern_test, remembered

CODE = {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}
PATTERNS: list[Any] = [
    CODE, {"system": "http://unitsofmeasure.org", "code": "mm[Hg]"}, {"coding": [{"code": "a"}, {"code": "b"}]},
    {"coding": []}, {}, [], ["a", 1], "vital-signs", 1, True, 1.5, Decimal("1.5"), None, {"a": {"b": [{"c": 1}]}},
    {"a": [[1, 2], [3]]}, {"value": 0}, {"flag": False}]
ATOMS: list[Any] = ["http://loinc.org", "8480-6", "mm[Hg]", "a", "b", "vital-signs", 1, 1.0, True, False, 0, 1.5,
                    Decimal("1.5"), None, "", "1"]


def _values(rng: random.Random, depth: int = 0) -> Any:
    """An odd JSON value, most often built of the patterns' own names and values."""
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice(ATOMS)
    if roll < 0.65:
        names = ["coding", "system", "code", "a", "b", "c", "value", "flag", "display"]
        return {rng.choice(names): _values(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return [_values(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def test_a_patterns_test_answers_as_matches_pattern() -> None:
    rng = random.Random(21)  # noqa: S311 - odd values, the same each run
    values = [_values(rng) for _ in range(3000)] + list(PATTERNS) + [
        {"coding": [{"system": "x", "code": "y"}, {"system": "http://loinc.org", "code": "8480-6", "display": "S"}]},
        {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, {"coding": {"code": "a"}},
        {"system": "http://unitsofmeasure.org", "code": "mm[Hg]", "value": 128}, {"value": False}, {"value": 0.0},
        {"flag": 0}, {"a": [[3], [2, 1]]}, {"coding": [{"code": "b"}, {"code": "a"}]}, {"coding": [{"code": "a"}]}]
    matched = 0
    for pattern, value in itertools.product(PATTERNS, values):
        expected = matches_pattern(value, pattern)
        assert pattern_test(pattern)(value) is expected, (pattern, value)
        matched += expected
    assert matched > 200  # the values match some patterns, not only fail them


def test_a_patterns_test_is_made_once_and_the_tests_kept_are_bounded() -> None:
    assert remembered(CODE) is remembered(CODE)
    patterns._TESTS.clear()
    kept = [{"code": str(i)} for i in range(patterns.TESTS_KEPT + 5)]
    for pattern in kept:
        assert remembered(pattern)({"code": pattern["code"], "system": "x"})
    assert len(patterns._TESTS) <= patterns.TESTS_KEPT
