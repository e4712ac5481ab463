"""A create or an update sent alone is drafted before its unit of work (interactions.drafted: its references
rewritten, its index values and JSON text; every other SQLite writer waits for a unit), its references still checked
in the unit. What it stores and answers is what the unit stores and answers when it works them out itself."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from facade.test_server import FHIR, post
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from service.facade import interactions
from service.fhirjson import rewritten
from service.store import resources, stored

READING = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
           "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Practitioner/nurse"}],
           "effectiveDateTime": "2026-03-02T09:00:00-05:00", "note": [{"text": "ünïcode ✓ and \"quotes\""}],
           "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}


def undrafted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The unit works the write out itself (as before drafting): `drafted` gives the rewritten resource alone."""
    calls: list[int] = []

    def bare(prepared: interactions.Prepared) -> interactions.Ahead:
        calls.append(1)
        return (*rewritten(prepared.resource, {}), None)  # type: ignore[return-value]

    monkeypatch.setattr(interactions, "drafted", bare)
    return calls


def rows(engine: Engine, resource_type: str, resource_id: str) -> list[Any]:
    """The resource's row, its versions and its index rows, as stored (its key and times left out)."""
    with engine.connect() as c:
        key = {"t": resource_type, "i": resource_id}
        row = c.execute(text("SELECT pk, version, deleted, content, warnings FROM fhir_resources "
                             "WHERE resource_type = :t AND id = :i"), key).one()
        versions = c.execute(text("SELECT version, method, deleted, content FROM fhir_resource_versions "
                                  "WHERE resource_type = :t AND id = :i ORDER BY version"), key).all()
        index = c.execute(text("SELECT param, system, value, low, high, path FROM fhir_search_index "
                               "WHERE resource_pk = :pk ORDER BY pk"), {"pk": row.pk}).all()
    return [tuple(row)[1:], [tuple(v) for v in versions], [tuple(i) for i in index]]


def masked(found: list[Any], resource_id: str, times: list[str]) -> str:
    out = json.dumps(found, default=str).replace(resource_id, "ID")
    for moment in times:
        out = out.replace(moment, "T")
    return out


def written(client: FlaskClient, engine: Engine, resource_id: str | None = None) -> str:
    """POST the reading (or PUT it at `resource_id`, then PUT it again changed): what is stored and answered."""
    if resource_id is None:
        answer = post(client, "/fhir/Observation", READING)
        assert answer.status_code == 201, answer.json
        answers = [answer]
    else:
        answers = [client.put(f"/fhir/Observation/{resource_id}", content_type=FHIR,
                              data=json.dumps(READING | {"id": resource_id, "status": status}))
                   for status in ("preliminary", "final")]
        assert [a.status_code for a in answers] == [201, 200], answers[-1].json
    made = answers[-1].json["id"]
    times = [a.json["meta"]["lastUpdated"] for a in answers]
    times += [str(resources.utcnow().__class__.fromisoformat(t.replace("Z", "+00:00")).replace(tzinfo=None))
              for t in times]
    return masked([rows(engine, "Observation", made), [a.get_data(as_text=True) for a in answers],
                   [a.headers.get("ETag") for a in answers]], made, times)


@pytest.fixture
def seeded(client: FlaskClient) -> FlaskClient:
    for doc in ({"resourceType": "Patient", "id": "p1"}, {"resourceType": "Practitioner", "id": "nurse"}):
        assert client.put(f"/fhir/{doc['resourceType']}/{doc['id']}", data=json.dumps(doc),
                          content_type=FHIR).status_code == 201
    return client


def test_a_drafted_create_stores_and_answers_what_an_undrafted_one_does(
        seeded: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = seeded.application.extensions["kfhir"].engine
    drafted = written(seeded, engine)
    calls = undrafted(monkeypatch)
    assert written(seeded, engine) == drafted and calls == [1]


def test_a_drafted_update_stores_and_answers_what_an_undrafted_one_does(
        seeded: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = seeded.application.extensions["kfhir"].engine
    drafted = written(seeded, engine, "s-1")
    calls = undrafted(monkeypatch)
    assert written(seeded, engine, "s-2").replace("s-2", "ID") == drafted.replace("s-1", "ID") and calls == [1, 1]


def test_a_drafted_write_still_has_its_references_checked_in_its_unit(seeded: FlaskClient) -> None:
    """A reference to a resource the server does not hold is refused (the unit checks it) and nothing is stored."""
    body = READING | {"subject": {"reference": "Patient/nobody"}}
    refused = post(seeded, "/fhir/Observation", body)
    assert refused.status_code == 400 and refused.json["issue"][1]["expression"] == [
        "Observation.subject.reference"]
    put = seeded.put("/fhir/Observation/s-3", data=json.dumps(body | {"id": "s-3"}), content_type=FHIR)
    assert put.status_code == 400
    assert seeded.get("/fhir/Observation").json["total"] == 0


def test_a_creates_version_is_made_once_before_its_unit_and_stamped_with_its_time_in_it(
        seeded: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The version answered ahead (the audit's) is the one stored, its meta.lastUpdated the time its unit wrote it;
    it was made two or three times (with the read-back's)."""
    made: list[str] = []

    def counted(content: dict[str, Any], *args: Any) -> dict[str, Any]:
        made.append(content["resourceType"])
        return stored.versioned(content, *args)

    monkeypatch.setattr(interactions, "versioned", counted)
    monkeypatch.setattr(resources, "versioned", counted)
    answer = post(seeded, "/fhir/Observation", READING)
    assert answer.status_code == 201, answer.json
    assert [t for t in made if t != "Provenance"] == ["Observation"]
    engine = seeded.application.extensions["kfhir"].engine
    with engine.connect() as c:
        at = c.execute(text("SELECT last_updated FROM fhir_resource_versions WHERE id = :i"),
                       {"i": answer.json["id"]}).scalar_one()
    moment = at if not isinstance(at, str) else datetime.fromisoformat(at)
    assert answer.json["meta"]["lastUpdated"] == stored.instant(moment)


@pytest.mark.parametrize("resource", [
    {"resourceType": "Observation", "id": "o1", "meta": {"versionId": "3", "lastUpdated": "2026-01-01T00:00:00Z",
                                                         "profile": ["p"]}, "status": "final"},
    {"resourceType": "Observation", "status": "final", "meta": {"tag": [{"code": "t"}]}, "id": "o1", "note": []},
    {"resourceType": "Observation", "status": "final"},
    {"resourceType": "Observation", "meta": None, "id": None},
])
@pytest.mark.parametrize("resource_id", [None, "o1"])
def test_a_shaped_resource_keeps_its_members_in_their_order_less_a_creates_id_and_the_servers_meta(
        resource: dict[str, Any], resource_id: str | None) -> None:
    made = interactions.shaped("Observation", resource, [], resource_id).resource
    # as the comprehension that made it before: every member but a create's id, then meta as a client may say it
    kept = {k: v for k, v in resource.items() if k != "id" or resource_id is not None}
    expected = kept | {"meta": interactions.client_meta(resource.get("meta"))}
    assert list(made.items()) == list(expected.items())
    assert json.dumps(made) == json.dumps(expected)
    assert made is not resource and "lastUpdated" not in made["meta"]
