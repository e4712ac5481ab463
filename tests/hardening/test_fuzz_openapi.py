"""schemathesis against openapi.yaml through the WSGI app: every operation, with requests that follow the
schema (positive) and requests that break it (negative). No response may be a 5xx, and no rejected
request may change the database."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from flask import Flask
from flask.testing import FlaskClient
from hardening.fuzzing import BACKENDS, FUZZ, REQUESTS, Referee, quiet_settings
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

pytestmark = pytest.mark.both_backends  # the fuzzers found PostgreSQL-only 5xx (NUL)

OPENAPI = Path(__file__).resolve().parents[2] / "openapi.yaml"
SCHEMA = schemathesis.openapi.from_dict(yaml.safe_load(OPENAPI.read_text()))
OPERATIONS = {f"{op.method.upper()} {op.path}" for op in (r.ok() for r in SCHEMA.get_all_operations())}

settings = pytest.fixture(quiet_settings)


def request_of(case: Any) -> dict[str, Any]:
    """The case as test-client arguments; the client's own credentials, not generated ones (auth has its tests)."""
    kwargs: dict[str, Any] = case.as_transport_kwargs()
    kwargs["headers"] = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"}
    return kwargs


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_no_operation_answers_5xx_and_rejections_change_nothing(app: Flask, client: FlaskClient,
                                                                 mode: GenerationMode) -> None:
    """Each operation gets its part of this test's share, so the rare ones are reached as surely as the rest."""
    referee = Referee(client, app.extensions["kfhir"].engine)
    SCHEMA.app = app  # cases serialize for a WSGI test client (path, query_string, data)
    budget = -(-REQUESTS // (len(BACKENDS) * 2))  # × positive, negative
    operations = [r.ok() for r in SCHEMA.get_all_operations()]
    unbreakable = set()  # negative mode: nothing in the operation's request can break its schema
    for operation in operations:
        # a tenth more: operations with few possible requests (GET /health) run out of examples early
        @examples(FUZZ, max_examples=-(-budget * 11 // (10 * len(operations))))
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            referee.send(f"{case.method.upper()} {case.path}", **request_of(case))

        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE
            unbreakable.add(f"{operation.method.upper()} {operation.path}")
    print(referee.verdict(f"schemathesis {mode.value}"))
    assert referee.server_errors == [], "\n".join(referee.server_errors[:20])
    assert referee.changed_by_rejection == []
    assert set(referee.operations) | unbreakable == OPERATIONS, OPERATIONS - set(referee.operations) - unbreakable
    assert sum(referee.statuses.values()) >= budget


@examples(FUZZ, max_examples=200)
@given(authorization=st.text(max_size=300) | st.builds("Bearer {}".format, st.text(max_size=200)))
def test_any_authorization_header_is_answered_without_5xx(client: FlaskClient, authorization: str) -> None:
    if any(c in authorization for c in "\r\n\x00"):
        return  # not a header a client can send
    response = client.get("/fhir/Patient", headers={"Authorization": authorization})
    assert response.status_code < 500
