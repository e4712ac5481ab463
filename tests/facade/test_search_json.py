"""A searchset served as text (paging.search_json splices each resource's stored JSON text into the Bundle) is the
very text json.dumps(ensure_ascii=False) writes of the Bundle search() builds: byte for byte, whatever the resources
hold (characters outside ASCII, control characters, escapes, numbers) and whatever the page (links, totals, offsets,
ignored parameters, _summary, _elements, _include)."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from service.app.runtime import Runtime
from service.facade import paging
from service.web import auditing

BASE = "https://fhir.example/fhir"
ODD = ["Ñúñez", "line\nbreak\ttab", "a \\u0041 that is no escape", "quote \" and \\ backslash", "emoji 🧪",
       "\x01 control", "plain", "", "€ 1,5", "﻿bom", "\u2028 separator"]


def observation(n: int, text: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"o{n}", "status": "final" if n % 3 else "amended",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": text}], "text": text},
            "subject": {"reference": f"Patient/p{n % 2}"}, "effectiveDateTime": f"2026-03-{1 + n % 9:02d}T10:00:00Z",
            "valueQuantity": {"value": [0.1, 1e-7, 1.0, 12345678901234567890, -0.0, 72][n % 6], "unit": "/min"},
            "note": [{"text": text}] if n % 2 else [], "extension": []}


@pytest.fixture
def held(runtime: Runtime) -> Runtime:
    with runtime.resources.unit(write=True) as unit:
        for n, text in enumerate(ODD * 2):
            unit.write("Observation", f"o{n}", observation(n, text), [], "PUT")
        for n in range(2):
            unit.write("Patient", f"p{n}", {"resourceType": "Patient", "id": f"p{n}", "name": [{"family": ODD[n]}]},
                       [], "PUT")
    return runtime


QUERIES = ["status=final", "status=final&_count=3", "status=final&_count=3&_offset=3", "status=amended&_count=50",
           "subject=Patient/p1", "subject=Patient/p1&_total=accurate&_count=2", "_count=0", "_summary=count",
           "status=nothing", "_sort=-date&_count=4", "date=ge2026-03-05&_total=none", "code=8867-4&_count=5",
           "subject=Patient/p0&code:text=Ñ&_count=5", "_summary=true&_count=2", "_elements=status,note&_count=2",
           "_include=Observation:subject&_count=2", "_revinclude=Provenance:target&_count=2", "_id=o1,o2,o3",
           "status=final&_count=2&_offset=999"]


@pytest.mark.both_backends
@pytest.mark.parametrize("raw", QUERIES)
def test_the_spliced_searchset_is_the_text_json_dumps_writes(held: Runtime, raw: str) -> None:
    items = parse_qsl(raw, keep_blank_values=True)
    lenient = "code:text" in raw  # an unsupported modifier, left out under Prefer: handling=lenient
    built = paging.search(held.resources, "Observation", items, BASE, lenient)
    assert paging.search_json(held.resources, "Observation", items, BASE, lenient).text == json.dumps(
        built, ensure_ascii=False)


@pytest.mark.both_backends
def test_every_odd_text_reaches_the_spliced_page(held: Runtime) -> None:
    text = paging.search_json(held.resources, "Observation", [("_count", "50")], BASE).text
    shown = [e["resource"]["code"]["text"] for e in json.loads(text)["entry"]]
    assert sorted(shown) == sorted(ODD * 2)
    assert "Ñúñez" in text and "\\u00d1" not in text  # written as json.dumps(ensure_ascii=False) writes it


def test_a_served_search_answers_the_same_text_pretty_or_not(client: FlaskClient) -> None:
    for n, text in enumerate(ODD[:4]):
        patient = {"resourceType": "Patient", "id": f"p{n}", "name": [{"family": text.replace("\x01", "")}]}
        assert client.put(f"/fhir/Patient/p{n}", json=patient).status_code == 201
    plain = client.get("/fhir/Patient?_count=2")
    pretty = client.get("/fhir/Patient?_count=2&_pretty=true")
    assert plain.status_code == pretty.status_code == 200
    assert pretty.get_data(as_text=True) == json.dumps(pretty.json, ensure_ascii=False, indent=2)
    assert plain.get_data(as_text=True) == json.dumps(plain.json, ensure_ascii=False)
    assert pretty.json["entry"] == plain.json["entry"]
    assert [e["resource"]["id"] for e in plain.json["entry"]] == ["p0", "p1"]


ODD_REFERENCES = [{"reference": "Patient/p0/_history/1"}, {"reference": "Group/g1"}, "Patient/p1", {"reference": 5},
                  {"display": "no reference"}, {"reference": "Patient/ñ"}, None]


@pytest.fixture
def referring(held: Runtime) -> Runtime:
    with held.resources.unit(write=True) as unit:
        for n, reference in enumerate(ODD_REFERENCES):
            odd = {"resourceType": "Observation", "id": f"r{n}", "status": "preliminary", "code": {"text": "odd"},
                   **({"subject": reference} if reference is not None else {}),
                   **({"patient": ODD_REFERENCES[-1 - n]} if ODD_REFERENCES[-1 - n] is not None else {})}
            unit.write("Observation", f"r{n}", odd, [], "PUT")
        for n, identifiers in enumerate([[{"system": "urn:mrn", "value": "M-1"}], [{"value": "M-2"}], [{}], []]):
            unit.write("Patient", f"i{n}", {"resourceType": "Patient", "id": f"i{n}", "identifier": identifiers},
                       [], "PUT")
    return held


@pytest.mark.both_backends
@pytest.mark.parametrize(("resource_type", "raw"), [
    ("Observation", "status=preliminary&_count=50"), ("Observation", "_count=50"), ("Observation", "status=final"),
    ("Patient", "_count=50"), ("Observation", "status=preliminary&bogus=1&_count=3"),
    ("Observation", "_include=Observation:subject&_count=3")])
def test_the_outline_names_what_the_text_names_for_the_audit(referring: Runtime, app: Flask, resource_type: str,
                                                             raw: str) -> None:
    """The audit event of a served search reads the outline, not the text: it must find the same resources and
    patients in it (web/auditing.py reads the same fields of either)."""
    items = parse_qsl(raw, keep_blank_values=True)
    answer = paging.search_json(referring.resources, resource_type, items, BASE, lenient=True)
    with app.test_request_context(f"/fhir/{resource_type}", method="GET"):
        request.view_args = {"resource_type": resource_type}
        from_text, from_outline = (auditing.access_of(body, 200, None, "search-type")
                                   for body in (json.loads(answer.text), answer.outline))
    assert from_outline == from_text
    assert from_text.entities and (from_text.patient_refs or from_text.patients or "status=final" in raw)
