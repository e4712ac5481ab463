"""The serving benchmark's transaction (a new patient and its heart rates), smaller: its rows are sent together
(service/store/batch.py), so its statements do not grow with its entries on PostgreSQL (each one a round trip
there), by at most one an entry on SQLite, and what was held back reads back whole."""
from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from bench.serving import transaction_bundle as readings

FHIR = "application/fhir+json"


def statements(app: Flask, client: FlaskClient, bundle: dict[str, Any]) -> tuple[int, Any]:
    count = [0]

    def counted(*_: Any) -> None:
        count[0] += 1

    engine = app.extensions["kfhir"].engine
    event.listen(engine, "before_cursor_execute", counted)
    try:
        answer = client.post("/fhir", data=json.dumps(bundle), content_type=FHIR)
    finally:
        event.remove(engine, "before_cursor_execute", counted)
    assert answer.status_code == 200, answer.json
    return count[0], answer.json


@pytest.mark.both_backends
def test_a_transactions_statements_do_not_grow_by_round_trips_per_entry(app: Flask, client: FlaskClient,
                                                                        database_url: str) -> None:
    statements(app, client, readings(3))  # what loads once (mappings, keys) is loaded
    small, _ = statements(app, client, readings(11))
    large, _ = statements(app, client, readings(41))
    # PostgreSQL: one INSERT a table whatever the entries. SQLite: SQLAlchemy sends the resource rows one by one
    # (it cannot rely on the order of a multi-row INSERT's RETURNING there), in process, no round trip.
    assert large - small <= (0 if database_url.startswith("postgresql") else 30)


@pytest.mark.both_backends
def test_every_row_a_transaction_held_back_reads_back(client: FlaskClient) -> None:
    _, answer = statements(client.application, client, readings(25))
    patient = answer["entry"][0]["response"]["location"].split("/_history")[0]
    found = client.get("/fhir/Observation", query_string={"subject": patient, "code": "8867-4",
                                                           "_count": "50"}).json
    assert found["total"] == 24  # every index row, each pointing at its own resource
    assert sorted(e["resource"]["valueQuantity"]["value"] for e in found["entry"]) == list(range(60, 84))
    for entry in answer["entry"]:
        location = entry["response"]["location"]
        assert client.get(f"/fhir/{location}").json["meta"]["versionId"] == "1"  # the version row
        history = client.get(f"/fhir/{location.split('/_history')[0]}/_history").json
        assert history["total"] == 1
    provenance = client.get("/fhir/Provenance", query_string={"target": patient}).json
    assert provenance["total"] == 1 and len(provenance["entry"][0]["resource"]["target"]) == 25
