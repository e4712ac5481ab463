"""Hypothesis-driven requests against the FHIR facade: our examples mutated (values replaced, elements deleted
or retyped, pieces of other examples grafted in), random resources, Bundles of them, random search queries
and raw bytes. No response may be a 5xx, and no rejected request may change the database."""
from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hardening.fuzzing import BACKENDS, Referee, quiet_settings, share
from hypothesis import given
from hypothesis import strategies as st

from service.resources import profiles_dir
from service.search.parameters import TYPES

pytestmark = pytest.mark.both_backends  # the fuzzers found PostgreSQL-only 5xx (NUL)

FHIR = "application/fhir+json"
EXAMPLES = sorted(p for p in (profiles_dir() / "examples").glob("*.json") if p.name != "manifest.json")
SEARCH_NAMES = ["identifier", "name", "family", "given", "birthdate", "gender", "subject", "patient", "date",
                "code", "status", "category", "_id", "_lastUpdated", "_count", "_sort", "_include", "_offset",
                "_summary", "_elements", "_total", "_format", "subject:Patient", "code:text", "date:missing"]
ODD_NUMBERS = ["0", "-1", "1e3", "²", "١٢", "99999999999999999999", "2147483648", "9223372036854775808", " 1"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
           | st.sampled_from(["", "2026-03-02", "2026-13-45", "2026-03-02T09:00:00Z", "Patient/demo-alpha",
                              "urn:uuid:00000000-0000-0000-0000-000000000000", "#x", "x" * 5000, "\x00",
                              "\ud7ff\ue000", "<div>x</div>", *ODD_NUMBERS]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)

settings = pytest.fixture(quiet_settings)


@cache
def _examples() -> tuple[str, ...]:
    return tuple(p.read_text(encoding="utf-8") for p in EXAMPLES)


@cache
def _pieces() -> tuple[str, ...]:
    """Every subtree of every example, as JSON text, to graft elsewhere."""
    found: dict[str, None] = {}
    for text in _examples():
        for _, node in _walk(json.loads(text)):
            found.setdefault(json.dumps(node), None)
    return tuple(found)


def _walk(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    out = [(path, node)]
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in children:
        out += _walk(child, (*path, key))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """An example with zero to three mutations anywhere in it (zero: it is stored, and later ones meet it)."""
    doc = json.loads(draw(st.sampled_from(_examples())))
    for _ in range(draw(st.integers(0, 3))):
        path, _node = draw(st.sampled_from(_walk(doc)))
        if not path:
            continue
        parent, last = _parent(doc, path), path[-1]
        action = draw(st.sampled_from(["replace", "delete", "graft", "wrap", "duplicate"]))
        if action == "replace":
            parent[last] = draw(JSON)
        elif action == "delete":
            del parent[last]
        elif action == "graft":
            parent[last] = json.loads(draw(st.sampled_from(_pieces())))
        elif action == "wrap":
            parent[last] = [parent[last]] if not isinstance(parent[last], list) else {"value": parent[last]}
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    if draw(st.booleans()):
        doc.pop("id", None)
    return doc


RESOURCES = mutated() | st.dictionaries(st.sampled_from(["resourceType", "id", "meta", "status", "subject", "code"])
                                        | st.text(max_size=8), JSON, max_size=5)
TYPE_NAMES = st.sampled_from(TYPES) | st.sampled_from(["Bundle", "StructureDefinition", "AuditEvent", "patient", ""])
IDS = st.sampled_from(["demo-alpha", "iv-session-1", "x", "A" * 64, "A" * 65]) | st.text(max_size=20)


def _type_of(resource: Any, draw: st.DrawFn) -> str:
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    return kind if isinstance(kind, str) and kind in TYPES and draw(st.booleans()) else draw(TYPE_NAMES)


def _segment(text: str) -> str:
    return quote(text, safe="") or "%20"


@st.composite
def bundle(draw: st.DrawFn) -> Any:
    entries = []
    for resource in draw(st.lists(RESOURCES, min_size=0, max_size=4)):
        kind = _type_of(resource, draw)
        method = draw(st.sampled_from(["POST", "PUT", "DELETE", "GET", "PATCH", "post"]))
        url = kind if method in ("POST", "post") else f"{kind}/{draw(IDS)}"
        entry: dict[str, Any] = {"resource": resource, "request": {"method": method, "url": url}}
        if draw(st.booleans()):
            entry["fullUrl"] = draw(st.sampled_from(["urn:uuid:6d1b2c3a-0000-4000-8000-000000000001", "x", ""]))
        if draw(st.integers(0, 5)) == 0:
            entry = draw(JSON)  # not an entry at all
        entries.append(entry)
    kind = draw(st.sampled_from(["transaction", "batch", "collection", "searchset", 7]))
    return {"resourceType": draw(st.sampled_from(["Bundle", "Bundle", "Patient"])), "type": kind, "entry": entries}


@st.composite
def facade_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    resource = draw(RESOURCES)
    kind = _type_of(resource, draw)
    body = json.dumps(resource, ensure_ascii=draw(st.booleans()))
    json_body = {"data": body, "content_type": FHIR}
    action = draw(st.sampled_from(["create", "conditional", "update", "transaction", "validate", "search",
                                   "delete", "raw", "read"]))
    if action == "create":
        return action, {"method": "POST", "path": f"/fhir/{_segment(kind)}", **json_body}
    if action == "conditional":
        query = urlencode(draw(st.lists(st.tuples(st.sampled_from(SEARCH_NAMES), st.text(max_size=20)), max_size=3)))
        return action, {"method": "POST", "path": f"/fhir/{_segment(kind)}", **json_body,
                        "headers": {"If-None-Exist": query}}
    if action == "update":
        headers = {"If-Match": draw(st.sampled_from(['W/"1"', '"2"', "*", "W/\"99999999999999999999\"", "x"]))}
        return action, {"method": "PUT", "path": f"/fhir/{_segment(kind)}/{_segment(draw(IDS))}", **json_body,
                        "headers": headers if draw(st.booleans()) else {}}
    if action == "transaction":
        return action, {"method": "POST", "path": draw(st.sampled_from(["/fhir", "/fhir/"])),
                        "data": json.dumps(draw(bundle())), "content_type": FHIR}
    if action == "validate":
        return action, {"method": "POST", "path": draw(st.sampled_from(["/fhir/$validate", f"/fhir/{kind}/$validate"])),
                        **json_body}
    if action == "search":
        params = draw(st.lists(st.tuples(st.sampled_from(SEARCH_NAMES) | st.text(max_size=8),
                                         st.sampled_from(ODD_NUMBERS) | st.text(max_size=30)), max_size=4))
        return action, {"method": "GET", "path": f"/fhir/{_segment(kind)}", "query_string": urlencode(params)}
    if action == "delete":
        return action, {"method": "DELETE", "path": f"/fhir/{_segment(kind)}/{_segment(draw(IDS))}"}
    if action == "read":
        tail = draw(st.sampled_from(["", "/_history", "/_history/1", "/_history/²", "/_history/99999999999"]))
        return action, {"method": "GET", "path": f"/fhir/{_segment(kind)}/{_segment(draw(IDS))}{tail}"}
    return action, {"method": "POST", "path": f"/fhir/{_segment(kind)}", "data": draw(st.binary(max_size=200)),
                    "content_type": draw(st.sampled_from([FHIR, "application/json", "text/plain", ""]))}


def seed(client: FlaskClient) -> None:
    """Every example under its own id, so mutated ones refer to resources that exist and updates meet them."""
    resources = [json.loads(text) for text in _examples()]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
    response = client.post("/fhir", data=json.dumps(bundle), content_type=FHIR)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_the_facade_never_answers_5xx_and_rejections_change_nothing(app: Flask, client: FlaskClient) -> None:
    seed(client)
    referee = Referee(client, app.extensions["kfhir"].engine)

    @share(len(BACKENDS))
    @given(request=facade_requests())
    def fuzz(request: tuple[str, dict[str, Any]]) -> None:
        action, kwargs = request
        referee.send(action, **kwargs)

    fuzz()
    print(referee.verdict("facade"))
    assert referee.server_errors == [], "\n".join(referee.server_errors[:20])
    assert referee.changed_by_rejection == []
    accepted = referee.statuses[200] + referee.statuses[201]
    assert referee.statuses[201] > 0 and accepted > 0.05 * sum(referee.statuses.values())
    assert sum(n for s, n in referee.statuses.items() if 400 <= s < 500) > 0
