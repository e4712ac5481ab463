"""A Bundle entry's walk: bdl-5 and bdl-8 answered in the generated walk, fullUrl checked outright and not remembered,
its resource (and a contained one) walked without Validator._value's dispatch, by a walk written for the entry's keys
(walkers.SHAPED); the findings are those of the generic dispatch, whatever the entry holds."""
from __future__ import annotations

import json
from typing import Any

import pytest

from service.validation import ours, walkers
from service.validation.engine import Validator
from service.validation.policy import ValidationPolicy

PATIENT = {"resourceType": "Patient", "id": "p"}
UUID = "urn:uuid:0a1b2c3d-0000-4000-8000-000000000001"
ENTRIES: list[Any] = [
    {}, {"fullUrl": "http://a/Patient/p"}, {"fullUrl": "http://a/Patient/p/_history/2", "resource": PATIENT},
    {"fullUrl": UUID, "resource": PATIENT}, {"fullUrl": "urn:uuid:0A1B", "resource": PATIENT},
    {"fullUrl": UUID.upper(), "resource": PATIENT}, {"fullUrl": "", "resource": PATIENT},
    {"fullUrl": "a b", "resource": PATIENT}, {"fullUrl": "http://a/Patient/p\n", "resource": PATIENT},
    {"fullUrl": 5, "resource": PATIENT}, {"fullUrl": None, "resource": PATIENT}, {"fullUrl": ["x"], "resource": PATIENT},
    {"_fullUrl": {"extension": []}, "resource": PATIENT},
    {"fullUrl": "http://a/Patient/p", "_fullUrl": {"id": "x"}, "resource": PATIENT},
    {"fullUrl": "http://a/Patient/p", "resource": {}}, {"fullUrl": "http://a/Patient/p", "resource": []},
    {"fullUrl": "http://a/Patient/p", "request": {"method": "GET", "url": "Patient"}},
    {"fullUrl": "http://a/Patient/p", "_resource": {"id": "r"}}, {"resource": None}, {"response": {"status": "200"}},
    {"fullUrl": "http://a/Patient/p", "resource": PATIENT, "resourceType": "X"}, "not an object", None,
    {"fullUrl": "urn:oid:1.2.3", "resource": PATIENT}, {"fullUrl": "relative/Patient/p", "resource": PATIENT},
    {"fullUrl": "http://a/b/_history/", "resource": PATIENT}, {"fullUrl": "x" * 300, "resource": PATIENT},
    {"fullUrl": "http://a/Patient/p", "resource": "x"}, {"resource": PATIENT, "fullUrl": "http://a/Patient/p"},
    {"fullUrl": "http://a/Patient/p", "resource": dict(PATIENT, id="p/q")}, {"fullUrl": "http://a/Patient/",
                                                                             "resource": dict(PATIENT, id="")},
    {"fullUrl": "http://a/Patient/p", "resource": dict(PATIENT, id=7)}, {"resource": dict(PATIENT, id="x" * 65)},
    {"id": "e", "fullUrl": "http://a/Patient/p", "resource": PATIENT, "search": {"mode": "match"}},
    {"id": "e", "extension": [{"url": "http://a/e", "valueString": "x"}], "resource": PATIENT},
    {"link": [{"relation": "self", "url": "http://a"}], "request": {"method": "GET"}, "response": {}},
    {"fullUrl": "http://a/Patient/p", "resource": dict(PATIENT, contained=[{"resourceType": "Organization", "id": "o"},
                                                                          "x", None, {}])},
]


#: an entry of which bdl-5 and bdl-8 hold, beside each of ENTRIES: whether the list is quiet is the list's to say
PLAIN = {"fullUrl": "https://a/fhir/Patient/p", "resource": PATIENT}


def _bundles() -> list[dict[str, Any]]:
    lists = [[entry] * copies for entry in ENTRIES for copies in (1, 2)]
    lists += [[PLAIN, entry] for entry in ENTRIES] + [[entry, PLAIN] for entry in ENTRIES]
    inner = {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "http://a/Patient/p/_history/2",
                                                                        "resource": PATIENT}, PLAIN]}
    lists += [[PLAIN, {"fullUrl": "https://a/fhir/Bundle/b", "resource": inner}, PLAIN]]  # a Bundle in a Bundle
    return [{"resourceType": "Bundle", "type": kind, "entry": entries}
            for kind in ("collection", "transaction") for entries in lists]


def _findings(validator: Validator, bundle: dict[str, Any]) -> str:
    return json.dumps([[f.severity, f.code, f.expression, f.message] for f in validator.validate(bundle)], default=str)


@pytest.mark.parametrize("policy", [ValidationPolicy.store(), ValidationPolicy()], ids=["store", "hl7"])
def test_an_entry_s_findings_are_those_of_the_generic_dispatch(policy: ValidationPolicy,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched:  # walks compiled without either shortcut (they compile on first use)
        patched.setattr(walkers, "bundle_path", lambda expression: None)
        patched.setattr(walkers, "_identity_uri", lambda *args: None)
        patched.setattr(walkers, "RESOURCE", -1)  # no type is: resources go through _value as other values
        patched.setattr(walkers, "SHAPED", frozenset())  # no walk by the entry's keys
        generic = ours(policy=policy)
        expected = [_findings(generic, b) for b in _bundles()]
    found = [_findings(ours(policy=policy), b) for b in _bundles()]
    assert found == expected
    assert sum("bdl-5" in f for f in found) >= 8 and sum("bdl-8" in f for f in found) >= 4  # both are exercised
    assert sum("fullUrl" in f and "uri" in f for f in found) >= 4  # and invalid uris


def test_bdl_5_and_bdl_8_are_answered_once_for_a_quiet_entry_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """bundles.py's pass over the entries finds every entry plain, with a resource and a fullUrl without /_history/
    (run.quiet_entries): the walk asks neither rule again per entry; one entry otherwise, and each entry is asked."""
    asked: list[Any] = []
    real = walkers.bundle_path

    def counting(expression: str) -> Any:
        path = real(expression)
        return path and (lambda node, resource: asked.append(node) or path(node, resource))
    monkeypatch.setattr(walkers, "bundle_path", counting)
    validator = ours()
    entries = [{"fullUrl": f"https://a/fhir/Patient/p{n}", "resource": dict(PATIENT, id=f"p{n}")} for n in range(3)]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}

    def bdl() -> list[tuple[str, str]]:
        return [(f.expression, f.message[:25]) for f in validator.validate(bundle) if "bdl-" in f.message]
    assert bdl() == [] and asked == []
    entries.append({"fullUrl": "https://a/fhir/Patient/p3/_history/1", "resource": dict(PATIENT, id="p3")})
    assert bdl() == [("Bundle.entry[3]", "Constraint failed: bdl-8:")]
    assert len(asked) == 8  # both rules of each of the 4 entries


def test_a_bundle_s_full_urls_are_not_remembered() -> None:
    """Each entry's fullUrl is its own: remembering them as clean texts (or as uris checked) never pays, and a
    large Bundle would push out the texts that do recur."""
    validator = ours()
    urls = [f"https://example.org/fhir/Patient/p-{n}" for n in range(100)]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": url, "resource": dict(PATIENT, id=f"p-{n}")} for n, url in enumerate(urls)]}
    assert not [f for f in validator.validate(bundle) if f.severity in ("error", "fatal")]
    assert not set(urls) & set(validator.primitives["uri"].seen)
    remembered = {text for names, _, _ in validator._layouts.values() for _, _, _, clean in names.values() if clean
                  for text in clean}
    assert not set(urls) & remembered


def test_each_shape_of_entry_has_a_walk_of_its_own_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry's keys, in their order, name its walk (compiled on first meeting, kept per element list up to
    SHAPES_KEPT); a key no element has, or a choice's, leaves the entry to the general walk. Findings unchanged."""
    monkeypatch.setattr(walkers, "SHAPES_KEPT", 3)
    compiled: list[tuple[str, ...]] = []
    shaped = walkers.compile_shaped
    monkeypatch.setattr(walkers, "compile_shaped", lambda v, c, shape: compiled.append(shape) or shaped(v, c, shape))
    validator = ours()
    shapes = [{"fullUrl": "http://a/Patient/p", "resource": PATIENT}, {"resource": PATIENT},
              {"resource": PATIENT, "fullUrl": "http://a/Patient/p"}, {"resource": PATIENT, "unknown": 1},
              {"fullUrl": "http://a/Patient/p"}]
    for entry in shapes * 2:
        validator.validate({"resourceType": "Bundle", "type": "collection", "entry": [entry, entry]})
    assert compiled == [("fullUrl", "resource"), ("resource",), ("resource", "fullUrl")]  # each once, 3 at most
    assert walkers.compile_shaped(validator, walkers_entry_children(validator), ("resource", "unknown")) is None
    assert walkers.compile_shaped(validator, walkers_entry_children(validator), ("resource", "_fullUrl")) is None


def walkers_entry_children(validator: Validator) -> list[Any]:
    bundle = validator.plan("http://hl7.org/fhir/StructureDefinition/Bundle")
    return next(c for c in bundle.root.children if c.path == "Bundle.entry").children


def test_a_bundle_changed_between_validations_gets_the_findings_of_its_new_content() -> None:
    """Nothing of a Bundle's entries is kept between validations (the walks are by keys, not by objects; fullUrls
    are checked outright): the same objects, changed in place, are judged afresh."""
    validator = ours()
    entries = [{"fullUrl": f"https://a/fhir/Patient/p{n}", "resource": dict(PATIENT, id=f"p{n}")} for n in range(3)]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}

    def errors() -> list[tuple[str, str]]:
        return [(f.expression, f.message) for f in validator.validate(bundle) if f.severity == "error"]
    assert errors() == []
    entries[2]["fullUrl"] = entries[0]["fullUrl"]  # now two entries share a fullUrl (bdl-7), one names another id
    entries[1]["resource"]["id"] = "p 1"
    changed = errors()
    assert [where for where, _ in changed] == ["Bundle.entry[1].fullUrl", "Bundle.entry[2].fullUrl",
                                               "Bundle.entry[1].resource.id", "Bundle"]
    assert "(Patient/p 1)" in changed[0][1] and "(Patient/p2)" in changed[1][1] and "bdl-7" in changed[3][1]
    entries[2]["fullUrl"], entries[1]["resource"]["id"] = "https://a/fhir/Patient/p2", "p1"
    assert errors() == []
