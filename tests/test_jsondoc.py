"""JSON documents from untrusted bytes: the limits' walk that finds whether a document keeps them (_within) refuses
exactly the documents the walk of every value refuses (_refuse_shape), with its refusal; repeated keys are named as
the first one repeated."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import BadRequest, RequestError
from service.jsondoc import _check_shape, _refuse_shape, _within, parse_json

documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=2), inner, max_size=6),
    max_leaves=40)
limits = st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 45))


def _refusal(check: Any, doc: Any, limit: tuple[int, int, int]) -> tuple[str, int, str] | None:
    try:
        check(doc, *limit)
    except RequestError as exc:
        return type(exc).__name__, exc.status, exc.detail
    return None


@settings(max_examples=600)
@given(documents, limits)
def test_the_shape_check_refuses_what_the_walk_of_every_value_refuses_and_says_the_same(
        doc: Any, limit: tuple[int, int, int]) -> None:
    refused = _refusal(_refuse_shape, doc, limit)
    assert _within(doc, *limit) == (refused is None)
    assert _refusal(_check_shape, doc, limit) == refused


@pytest.mark.parametrize(("text", "key"), [
    ('{"a": 1, "b": 2, "a": 3}', "a"),
    ('{"a": 1, "b": 2, "b": 3, "a": 4}', "b"),   # the first key seen again, not the first key of the object
    ('{"x": {"c": 1, "d": {"e": 1, "e": 2}, "c": 2}}', "e"),  # inner objects are made (and refused) first
    ('{"": 1, "": 2}', ""),
])
def test_a_repeated_key_is_refused_naming_the_first_key_seen_again(text: str, key: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_json(text.encode(), 64)
    assert refused.value.detail == f"The JSON object repeats the key {key!r}."


def test_objects_keep_their_members_in_order() -> None:
    text = '{"z": 1, "a": {"m": [1, {"k": null}], "b": "x"}, "c": []}'
    doc = parse_json(text.encode(), 64)
    assert json.dumps(doc) == text and list(doc) == ["z", "a", "c"]
