"""coded.py: a memo key is given exactly to a plain Coding, CodeableConcept or meta (nothing but its members, none
null, each of its JSON type), and two are equal exactly when their members are."""
from __future__ import annotations

import itertools
import json
from typing import Any

from service.conformance.definitions import load
from service.resources import profiles_dir
from service.validation.coded import CODING, CONCEPT, META, frozen_coding, frozen_concept, frozen_meta
from service.validation.engine import Validator

#: values a member may hold: texts, a boolean, a number, a null, an object, a list, a str subclass
ODD = ["a", "b", True, 1, None, {}, [], type("Text", (str,), {})("a")]


def _plain_coding(value: Any) -> bool:
    return type(value) is dict and value.keys() <= set(CODING) and all(
        type(v) is (bool if k == "userSelected" else str) for k, v in value.items())


def _codings() -> list[Any]:
    """Every coding of up to three members (of ours or another) holding each of ODD, and some that are no object."""
    names = [*CODING, "id"]
    found: list[Any] = [None, "x", [], type("Coding", (dict,), {})(code="a")]
    for size in range(4):
        for keys in itertools.combinations(names, size):
            for values in itertools.product(ODD[:5] if size == 3 else ODD, repeat=size):
                found.append(dict(zip(keys, values, strict=True)))
    return found


def test_a_coding_is_frozen_exactly_when_plain_and_by_its_members() -> None:
    codings = _codings()
    frozen = [frozen_coding(c) for c in codings]
    assert len(codings) > 3000
    for coding, key in zip(codings, frozen, strict=True):
        assert (key is not None) == _plain_coding(coding), coding
    plain = [(c, k) for c, k in zip(codings, frozen, strict=True) if k is not None]
    for (a, ka), (b, kb) in itertools.combinations(plain, 2):
        assert (ka == kb) == (a == b and {k: type(v) for k, v in a.items()} == {k: type(v) for k, v in b.items()})


def test_a_concept_is_frozen_exactly_when_plain() -> None:
    coding = {"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}
    other = {**coding, "code": "8462-4"}
    for text, codings, extra in itertools.product([None, "x", 1, ...], [None, [], [coding], [coding, other], [other],
                                                                         [coding, {"code": 1}], {}, (coding,), ...],
                                                  [{}, {"id": "c"}, {"extension": []}]):
        concept = {**({} if text is ... else {"text": text}), **({} if codings is ... else {"coding": codings}),
                   **extra}
        plain = concept.keys() <= CONCEPT and None not in concept.values() and type(concept.get("text", "")) is str \
            and type(concept.get("coding", [{}])) is list and concept.get("coding") != [] \
            and all(map(_plain_coding, concept.get("coding", [])))
        key = frozen_concept(concept)
        assert (key is not None) == plain, concept
        if plain:
            assert key == (concept.get("text"), *map(frozen_coding, concept.get("coding", []))), concept


def test_a_meta_is_frozen_exactly_when_plain() -> None:
    tag = {"system": "https://ketamine-fhir.org/fhir/mapping", "code": "administration/1", "display": "Mapped"}
    keys = set()
    for source, profiles, tags, labels, extra in itertools.product(
            [..., None, "urn:x", 1], [..., None, [], ["http://x.org/p"], ["http://x.org/p", 2], "p"],
            [..., None, [tag], [tag, {"code": 1}], tag], [..., [tag], [{**tag, "userSelected": "yes"}]],
            [{}, {"versionId": "1"}, {"id": "m"}]):
        given = {"source": source, "profile": profiles, "tag": tags, "security": labels}
        meta = {**{k: v for k, v in given.items() if v is not ...}, **extra}
        plain = meta.keys() <= META and None not in meta.values() and type(meta.get("source", "")) is str \
            and all(type(meta.get(k, [{}])) is list and meta.get(k) != [] for k in ("profile", "tag", "security")) \
            and all(type(p) is str for p in meta.get("profile", [])) \
            and all(map(_plain_coding, meta.get("tag", []) + meta.get("security", [])))
        key = frozen_meta(meta)
        assert (key is not None) == plain, meta
        if plain:
            assert key not in keys, meta  # each plain meta its own key
            keys.add(key)
    assert len(keys) > 10


def test_an_empty_array_is_never_remembered_as_a_member_absent() -> None:
    """An empty `coding`, `profile`, `tag` or `security` is an error (ele-1) that the same concept or meta without it
    lacks: once that one was walked clean, the one with [] is still walked and refused, as by a validator that
    remembers nothing (they shared a memo key before)."""
    condition = json.loads((profiles_dir() / "examples" / "Condition-trd-alpha.json").read_text())
    meta, code = {"source": "urn:uuid:7d2c1f4e-0a4b-4c5e-9f1a-2b3c4d5e6f70"}, {"text": "Depression"}
    clean = [{**condition, "meta": meta}, {**condition, "code": code, "meta": meta}]
    odd = [{**condition, "meta": {**meta, name: []}} for name in ("profile", "tag", "security")]
    odd.append({**condition, "code": {**code, "coding": []}, "meta": meta})
    warm = Validator(load())
    for doc in clean:
        warm.validate(doc)
    for doc in odd:
        found = [f.message for f in warm.validate(doc)]
        assert any("must not be an empty array (ele-1)" in m for m in found), doc
        assert found == [f.message for f in Validator(load()).validate(doc)]
