"""Attack: a write that crosses scopes (issue 20, item 6).

A client with only `system/Observation.c` posted a session-monitoring Observation `partOf` an existing session
(BP 199/199): 201, and the clinic record became version 2 with the new reading. Through the domain API that
needs `system/ketamine-records.u`; now the read-back into a record needs it too."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from facade.test_server import FHIR, golden_bundle, post, the_plan
from flask.testing import FlaskClient


def a_session_and_a_reading(client: FlaskClient) -> tuple[str, str]:
    """A session stored through FHIR (its record at version 1), and one of its readings as it would be posted
    on its own (the reference naming the stored session); the reading's resource type."""
    the_plan(client)
    bundle = golden_bundle("administration")
    readings = [e for e in bundle["entry"] if e["resource"].get("partOf")]
    rest = [e for e in bundle["entry"] if not e["resource"].get("partOf")]
    sent = post(client, "/fhir", bundle | {"entry": rest})
    assert sent.status_code == 200, sent.json
    text = json.dumps(readings[0]["resource"] | {"id": None})
    for entry, answer in zip(rest, sent.json["entry"], strict=True):
        text = text.replace(f'"{entry["fullUrl"]}"', '"{}"'.format("/".join(answer["response"]["location"].split("/")[:2])))
    resource = {k: v for k, v in json.loads(text).items() if v is not None}
    return json.dumps(resource), resource["resourceType"]


def record_version(client: FlaskClient) -> Any:
    return client.get("/api/v1/administrations").json["items"][0]["version"]


def test_a_reading_that_would_change_a_record_needs_the_record_scope(client: FlaskClient,
                                                                     api_key: Callable[..., str]) -> None:
    reading, kind = a_session_and_a_reading(client)
    observation_only = api_key(f"system/{kind}.c")
    before = client.get(f"/fhir/{kind}").json["total"]

    refused = client.post(f"/fhir/{kind}", data=reading, content_type=FHIR,
                          headers={"Authorization": f"Bearer {observation_only}"})

    assert refused.status_code == 403
    assert "system/ketamine-records.u" in refused.json["issue"][0]["details"]["text"]
    assert record_version(client) == 1
    assert client.get(f"/fhir/{kind}").json["total"] == before  # nothing stored


def test_with_the_record_scope_the_reading_joins_its_record(client: FlaskClient,
                                                            api_key: Callable[..., str]) -> None:
    reading, kind = a_session_and_a_reading(client)
    allowed = api_key(f"system/{kind}.c", "system/ketamine-records.u")

    accepted = client.post(f"/fhir/{kind}", data=reading, content_type=FHIR,
                           headers={"Authorization": f"Bearer {allowed}"})

    assert accepted.status_code == 201, accepted.json
    assert record_version(client) == 2
