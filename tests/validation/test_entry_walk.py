"""A Bundle entry's walk: bdl-5 and bdl-8 answered in the generated walk, fullUrl checked outright and not remembered,
its resource (and a contained one) walked without Validator._value's dispatch; the findings are those of the generic
dispatch, whatever the entry holds."""
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
    {"fullUrl": "http://a/Patient/p", "resource": "x"},
    {"fullUrl": "http://a/Patient/p", "resource": dict(PATIENT, contained=[{"resourceType": "Organization", "id": "o"},
                                                                          "x", None, {}])},
]


def _bundles() -> list[dict[str, Any]]:
    return [{"resourceType": "Bundle", "type": kind, "entry": [entry] * copies}
            for kind in ("collection", "transaction") for entry in ENTRIES for copies in (1, 2)]


def _findings(validator: Validator, bundle: dict[str, Any]) -> str:
    return json.dumps([[f.severity, f.code, f.expression, f.message] for f in validator.validate(bundle)], default=str)


@pytest.mark.parametrize("policy", [ValidationPolicy.store(), ValidationPolicy()], ids=["store", "hl7"])
def test_an_entry_s_findings_are_those_of_the_generic_dispatch(policy: ValidationPolicy,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched:  # walks compiled without either shortcut (they compile on first use)
        patched.setattr(walkers, "bundle_path", lambda expression: None)
        patched.setattr(walkers, "_identity_uri", lambda *args: None)
        patched.setattr(walkers, "RESOURCE", -1)  # no type is: resources go through _value as other values
        generic = ours(policy=policy)
        expected = [_findings(generic, b) for b in _bundles()]
    found = [_findings(ours(policy=policy), b) for b in _bundles()]
    assert found == expected
    assert sum("bdl-5" in f for f in found) >= 8 and sum("bdl-8" in f for f in found) >= 4  # both are exercised
    assert sum("fullUrl" in f and "uri" in f for f in found) >= 4  # and invalid uris


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
