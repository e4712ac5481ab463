"""The native Bundle invariants (bdl-1 to -5, -7 to -12) answer exactly as fhirpathpy does, or defer to it."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.conformance.definitions import load
from service.validation.bundle_invariants import BUNDLE
from service.validation.invariants import InvariantError, Invariants

OFFICIAL = Path(__file__).resolve().parents[2] / ".cache" / "hl7.fhir.r4.examples-4.0.1.tgz"
ENTRY_RULES = {"bdl-5", "bdl-8"}


def _rules() -> dict[str, str]:
    """key → expression of the Bundle's own invariants that have a native path."""
    return {c["key"]: c["expression"] for e in load().structure("Bundle")["snapshot"]["element"]
            for c in e.get("constraint", []) if c.get("expression") in BUNDLE}


def _agree(invariants: Invariants, key: str, expression: str, bundle: Any) -> int:
    """Compares the native answer with fhirpathpy's on the Bundle (or each of its entries); returns how many
    answers were compared (a deferral compares nothing)."""
    nodes = bundle.get("entry") if key in ENTRY_RULES else [bundle]
    compared = 0
    for node in nodes if isinstance(nodes, list) else []:
        answer = BUNDLE[expression](node, bundle)
        if answer is None:
            continue
        try:
            slow = invariants.evaluate(expression, node, "Bundle.entry" if key in ENTRY_RULES else "Bundle",
                                       bundle, bundle)
        except InvariantError:
            pytest.fail(f"{key}: the native path answered {answer} where fhirpathpy fails: {node}")
        assert answer == slow, (key, node)
        compared += 1
    return compared


def test_every_native_path_is_an_r4_bundle_invariant() -> None:
    assert set(_rules().values()) == set(BUNDLE)
    assert set(_rules()) == {"bdl-1", "bdl-2", "bdl-3", "bdl-4", "bdl-5", "bdl-7", "bdl-8", "bdl-9", "bdl-10", "bdl-11",
                             "bdl-12"}


def test_native_paths_agree_with_fhirpath_on_the_official_bundles() -> None:
    if not OFFICIAL.exists():
        pytest.fail(f"{OFFICIAL} is missing: `make test` downloads it (scripts/fetch_packages.sh)")
    invariants = Invariants()
    compared = dict.fromkeys(_rules(), 0)
    with tarfile.open(OFFICIAL) as tar:
        for member in tar.getmembers():
            if not member.name.endswith(".json") or "Bundle" not in member.name or member.size > 300_000:
                continue
            doc = json.load(tar.extractfile(member))  # type: ignore[arg-type]
            if doc.get("resourceType") != "Bundle":
                continue
            for key, expression in _rules().items():
                compared[key] += _agree(invariants, key, expression, doc)
    assert all(n >= 10 for n in compared.values()), compared


_text = st.sampled_from(["http://x.org/Patient/1", "http://x.org/Patient/1/_history/2", "urn:uuid:1", ""])
_maybe = st.sampled_from([None, [], {}, {"method": "GET"}, [{"x": 1}]])
_meta = st.one_of(st.none(), st.just([]), st.fixed_dictionaries({}, optional={
    "versionId": st.sampled_from(["1", "2", "", None, 3, []]), "_versionId": st.just({"id": "v"})}))
_resource = st.one_of(st.none(), st.just([]), st.just("text"), st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["Patient", "Composition", "MessageHeader", "Foo"])},
    optional={"meta": _meta, "_meta": st.just({"id": "m"})}), st.just({}), st.just({"resourceType": 5}))
_plain_entry = st.fixed_dictionaries({}, optional={
    "fullUrl": st.one_of(_text, st.none(), st.just(7), st.just([])), "resource": _resource, "request": _maybe,
    "response": _maybe, "search": _maybe})
_odd_entry = st.fixed_dictionaries({}, optional={
    "_fullUrl": st.just({"id": "f"}), "_resource": st.just({"id": "r"}), "_request": _maybe,
    "_response": st.just({"id": "s"}), "_search": st.just({"id": "s"}), "resourceType": st.just("Patient")})
#: mostly plain entries, which the native paths answer; the odd ones (holders, non-objects) they defer
_entry = st.one_of(_plain_entry, _plain_entry, _plain_entry, st.builds(lambda a, b: {**a, **b}, _plain_entry, _odd_entry),
                   st.none(), st.just("text"))
_scalar = st.sampled_from(["", "x", "2026-03-05T12:00:00Z", 0, 3, 1.5, True, False, None, [], {}, ["a"], [1, 2],
                           {"a": 1}])
_identifier = st.one_of(_scalar, st.fixed_dictionaries({}, optional={
    "system": _scalar, "value": _scalar, "_system": st.just({"id": "s"}), "_value": st.just({"id": "v"}),
    "resourceType": st.just("Identifier")}), st.lists(st.fixed_dictionaries({}, optional={"system": _scalar,
                                                                                       "value": _scalar}), max_size=2))
_plain_bundle = st.fixed_dictionaries({"resourceType": st.just("Bundle")}, optional={
    "total": _scalar, "timestamp": _scalar, "identifier": _identifier,
    "type": st.sampled_from(["batch", "transaction", "history", "batch-response", "transaction-response",
                             "collection", "document", "message", "searchset", "", 5, None, []]),
    "entry": st.one_of(st.lists(_entry, max_size=4), st.lists(_plain_entry, max_size=4), st.none(), _entry)})
bundles = st.one_of(_plain_bundle, _plain_bundle, st.builds(
    lambda b, odd: {**b, **odd}, _plain_bundle,
    st.fixed_dictionaries({}, optional={"_type": st.just({"id": "t"}), "_entry": st.just([{"id": "e"}]),
                                        "_total": st.just({"id": "n"}), "_timestamp": st.just({"id": "t"}),
                                        "_identifier": st.just({"id": "i"})})))


@settings(max_examples=400, deadline=None)
@given(bundle=bundles)
def test_native_paths_agree_with_fhirpath_on_generated_bundles(bundle: dict[str, Any]) -> None:
    invariants = Invariants()
    for key, expression in _rules().items():
        _agree(invariants, key, expression, bundle)


def test_generated_bundles_reach_the_native_answers() -> None:
    """Not every generated Bundle defers: plain ones get an answer from each native path, true and false."""
    plain = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"fullUrl": "http://x.org/Patient/1", "resource": {"resourceType": "Patient"}, "request": {"method": "GET"}},
        {"fullUrl": "http://x.org/Patient/1", "resource": {"resourceType": "Patient"}}]}
    answers = {key: [BUNDLE[e](n, plain) for n in (plain["entry"] if key in ENTRY_RULES else [plain])]
               for key, e in _rules().items()}
    assert answers == {"bdl-1": [True], "bdl-2": [True], "bdl-3": [False], "bdl-4": [True], "bdl-7": [False],
                       "bdl-5": [True, True], "bdl-8": [True, True], "bdl-9": [True], "bdl-10": [True], "bdl-11": [True],
                       "bdl-12": [True]}
    for kind, first, wanted in (("document", "Composition", "bdl-11"), ("message", "MessageHeader", "bdl-12")):
        rule = _rules()[wanted]
        assert BUNDLE[rule]({**plain, "type": kind}, plain) is False  # a Patient first
        assert BUNDLE[rule]({**plain, "type": kind, "entry": []}, plain) is False  # true implies {}
        assert BUNDLE[rule]({**plain, "type": kind, "entry": [{"resource": {"resourceType": first}}]}, plain) is True
        assert BUNDLE[rule]({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": first}}]}, plain) is True
    searched = {**plain, "entry": [{**plain["entry"][0], "search": {"mode": "match"}}]}
    assert BUNDLE["entry.search.empty() or (type = 'searchset')"](searched, searched) is False


def test_document_and_total_rules_answer_both_ways() -> None:
    """bdl-1, -9 and -10 answer true and false natively (not only defer) on plain Bundles, as fhirpathpy does."""
    invariants, rules = Invariants(), _rules()
    cases = {"bdl-1": [({"total": 2, "type": "searchset"}, True), ({"total": 2, "type": "collection"}, False),
                       ({"total": 2}, False), ({"type": "collection"}, True)],
             "bdl-9": [({"type": "document", "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1"}},
                        True), ({"type": "document", "identifier": {"system": "urn:ietf:rfc:3986"}}, False),
                       ({"type": "collection"}, True), ({}, False)],
             "bdl-10": [({"type": "document", "timestamp": "2026-03-05T12:00:00Z"}, True),
                        ({"type": "document"}, False), ({"type": "batch"}, True), ({"timestamp": "x"}, True)]}
    for key, pairs in cases.items():
        for fields, wanted in pairs:
            bundle = {"resourceType": "Bundle", **fields}
            assert BUNDLE[rules[key]](bundle, bundle) is wanted, (key, bundle)
            assert invariants.evaluate(rules[key], bundle, "Bundle", bundle, bundle) is wanted, (key, bundle)
