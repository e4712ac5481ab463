"""Primitive values: the verdicts remembered for short texts are the verdicts, and the memory stays bounded."""
from __future__ import annotations

from service.conformance.definitions import load
from service.validation.primitives import SEEN_LENGTH, SEEN_MAX, load_primitives


def test_a_remembered_verdict_is_the_verdict() -> None:
    primitives = load_primitives(load())
    cases = {"code": ["active", " active", "a  b", ""], "dateTime": ["2026-02-28", "2026-02-30", "2026-13"],
             "uri": ["http://loinc.org", "has space"], "id": ["abc", "a" * 65, "a_b"]}
    for name, values in cases.items():
        first = [primitives[name].check(v) for v in values]
        assert [primitives[name].check(v) for v in values] == first  # the second time, from memory
        assert first == [primitives[name]._text(v) for v in values]
    assert primitives["code"].check("active") is None and primitives["code"].check(" active") is not None
    assert primitives["dateTime"].check("2026-02-30") == "is not a valid dateTime: no such day"


def test_memory_is_bounded() -> None:
    code = load_primitives(load())["code"]
    for i in range(3 * SEEN_MAX):
        assert code.check(f"c{i}") is None
    assert len(code.seen) <= SEEN_MAX
    assert code.check("x" * (SEEN_LENGTH + 1)) is None
    assert "x" * (SEEN_LENGTH + 1) not in code.seen
