"""A Bundle of bare entries (Bundles._bare: each an object of a RESTful fullUrl naming its resource, and the resource)
is judged in one pass, its walk gives each resource to _resource outright, and its root rules that hold are answered
before the walk (Bundles._rules_left): the findings are those of the entry-by-entry pass and of asking every rule
after the walk, whatever the entries hold."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from service.conformance.definitions import CORE_SD
from service.validation import ours
from service.validation.bundles import Bundles
from service.validation.engine import Validator
from service.validation.plan import StructurePlan
from service.validation.run import Run

BASE = "https://a.org/fhir/"


class Text(str):
    """A string that is not exactly a str (a caller's, not JSON's)."""


class Object(dict):  # type: ignore[type-arg]
    """An object that is not exactly a dict."""


def _entries(count: int) -> list[dict[str, Any]]:
    kinds = ("Patient", "Observation", "Practitioner")
    out = []
    for n in range(count):
        kind = kinds[n % 3]
        resource: dict[str, Any] = {"resourceType": kind, "id": f"r-{n}"}
        if kind == "Observation":
            resource.update(status="final", code={"text": "x"}, meta={"profile": [CORE_SD + "Observation"]})
        out.append({"fullUrl": f"{BASE}{kind}/r-{n}", "resource": resource})
    return out


def _bundle(entries: list[Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": "b", "type": "collection", "entry": entries, **extra}


def _defects() -> list[dict[str, Any]]:
    """Bundles that are bare but for one thing, each something _bare's tests stand for."""
    out = []

    def entry_changed(n: int, **changes: Any) -> None:
        entries = _entries(4)
        entries[n] = {**entries[n], **changes}
        out.append(_bundle(entries))

    def resource_changed(n: int, **changes: Any) -> None:
        entries = _entries(4)
        entries[n]["resource"] = {**entries[n]["resource"], **changes}
        out.append(_bundle(entries))
    url = f"{BASE}Observation/r-1"
    for bad in (url.replace("fhir/", "fhir /"), url.replace("fhir/", "fhir\t/"), url + "\n", url + "\x0b", url + "\r",
                url + "\f", url.replace("fhir/", "fhir"), url.replace("https://", "ftp://"),
                url.replace("https://", "http:/"), f"{BASE}x/Observation/r-1", f"{BASE}Patient/r-1",
                url + "/_history/1", "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", "Observation/r-1", "", 7, None,
                [url], Text(url), f"{BASE}Observation/r-0"):
        entry_changed(1, fullUrl=bad)
    for changes in ({"id": "r/1"}, {"id": "r-1\n"}, {"id": "r-1\x1c"}, {"id": 1}, {"id": Text("r-1")}, {"id": ""},
                    {"resourceType": "Foo"}, {"meta": {"versionId": "1"}}, {"meta": {"_versionId": {"id": "v"}}},
                    {"meta": {"resourceType": "Meta"}}, {"meta": None}, {"meta": []}, {"meta": "x"},
                    {"_meta": {"id": "m"}}, {"_id": {"id": "i"}}):
        resource_changed(1, **changes)
    for key, value in (("search", {"mode": "match"}), ("request", {"method": "GET", "url": "Patient"}),
                       ("response", {"status": "200"}), ("id", "e"), ("resourceType", "Patient"),
                       ("_fullUrl", {"id": "f"}), ("_resource", {"id": "r"}), ("extra", 1)):
        entry_changed(2, **{key: value})
    for ident in ("r 1", "r\t1", "r-1\n", "r\r1", "r\f1", "r\x0b1", "r\x1c1", "a/b", "/", "", "_history"):
        resource_changed(1, id=ident)  # the fullUrl saying the same
        out[-1]["entry"][1]["fullUrl"] = f"{BASE}Observation/{ident}"
    for base in ("https://a.org/my fhir/", "https://a.org/fhir\n/", "https://a.org/_history/", "https://a.org/fhir",
                 "http://a.org/fhir/", "ftp://a.org/fhir/", "https:/", "a.org/", "urn:uuid:", "https://a.org/\x0b/"):
        entries = _entries(3)  # each fullUrl on another base
        for entry in entries:
            entry["fullUrl"] = entry["fullUrl"].replace(BASE, base)
        out.append(_bundle(entries))
    entries = _entries(4)
    entries[3] = {"resource": entries[3]["resource"], "fullUrl": entries[3]["fullUrl"]}  # another key order: bare
    out.append(_bundle(entries))
    for odd in (Object(_entries(1)[0]), {"fullUrl": f"{BASE}Patient/r-0", "resource": Object(_entries(1)[0]["resource"])},
                None, "x", [], {}, {"fullUrl": f"{BASE}Patient/r-0"}):
        out.append(_bundle([*_entries(2), odd]))
    entries = _entries(2)  # a versioned entry whose key (fullUrl & versionId) is another's fullUrl
    entries[0]["resource"]["meta"] = {"versionId": "1"}
    entries.append({"fullUrl": entries[0]["fullUrl"] + "1", "resource": {"resourceType": "Patient", "id": "r-01"}})
    out.append(_bundle(entries))
    for kind in (None, "", 5, "batch", "transaction", "history", "searchset", "document", "message",
                 "transaction-response", "batch-response"):
        out.append({**_bundle(_entries(3)), "type": kind})
    out += [_bundle(_entries(3), _type={"id": "t"}), _bundle(_entries(3), _entry=[{"id": "e"}]),
            _bundle(_entries(3), total=3), _bundle([])]
    inner = _bundle(_entries(3))
    out.append(_bundle([*_entries(2), {"fullUrl": f"{BASE}Bundle/b", "resource": inner}]))  # bare in bare
    out.append(_bundle([*_entries(2), {"fullUrl": f"{BASE}Bundle/b", "resource": _defects_inner()}]))
    return out


def _defects_inner() -> dict[str, Any]:
    entries = _entries(3)
    entries[1]["fullUrl"] += "/_history/2"
    return _bundle(entries)


def _findings(validator: Validator, resource: dict[str, Any], must_support: bool = False) -> str:
    found = validator.validate(copy.deepcopy(resource), must_support=must_support)
    return json.dumps([[f.severity, f.code, f.expression, f.message] for f in found], default=str)


def test_a_bare_list_gets_the_findings_of_the_entry_by_entry_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    documents = [_bundle(_entries(n)) for n in (1, 2, 10)] + _defects()
    documents.append({"resourceType": "Parameters", "parameter": [{"name": "b", "resource": _bundle(_entries(3))}]})
    answers: list[bool] = []
    bare = Bundles._bare
    monkeypatch.setattr(Bundles, "_bare", lambda self, listed, run: answers.append(bare(self, listed, run)) or
                        answers[-1])
    fast = [_findings(ours(), d, must) for d in documents for must in (False, True)]
    monkeypatch.setattr(Bundles, "_bare", lambda self, listed, run: False)
    monkeypatch.setattr(Bundles, "_rules_left", lambda self, bundle, plan: plan)
    slow = [_findings(ours(), d, must) for d in documents for must in (False, True)]
    assert fast == slow
    assert answers.count(True) >= 40 and answers.count(False) >= 80  # both ways, many times
    assert sum("fullUrl" in f for f in slow) >= 20 and sum("bdl-7" in f for f in slow) >= 2  # and with findings


def test_the_root_rules_that_hold_are_left_out_and_the_others_asked_after_the_walk() -> None:
    validator = ours()
    plan = validator.plan(CORE_SD + "Bundle")
    keys = [rule.key for rule in plan.root.constraints]
    assert {"bdl-1", "bdl-2", "bdl-3", "bdl-4", "bdl-7", "bdl-9", "bdl-10", "bdl-11", "bdl-12"} <= set(keys)

    def left(bundle: dict[str, Any]) -> StructurePlan:
        run_plans = validator._bundle(bundle, "Bundle", _run(bundle), [plan])
        return run_plans[0]
    collection = left(_bundle(_entries(3)))
    assert collection.root.constraints == () and collection.root.children is plan.root.children
    assert left(_bundle(_entries(3))) is collection  # made once per set of rules that hold
    batch = left({**_bundle(_entries(3)), "type": "batch"})  # bare entries have no request: bdl-3 fails
    assert [rule.key for rule in batch.root.constraints] == ["bdl-3"]
    found = [f.message for f in validator.validate({**_bundle(_entries(3)), "type": "batch"}) if "bdl-" in f.message]
    assert len(found) == 1 and found[0].startswith("Constraint failed: bdl-3:")
    untyped = [rule.key for rule in left({**_bundle(_entries(3)), "_type": {"id": "t"}}).root.constraints]
    assert untyped and untyped == [key for key in keys if key in untyped]  # a holder: left to FHIRPath, in order


def _run(bundle: dict[str, Any]) -> Run:
    return Run(bundle)
