"""Log lines are JSON with the request's id, route template, status and duration; never URLs, queries or messages
of exceptions."""
from __future__ import annotations

import json
import logging

import pytest
from flask import Flask, g
from flask.testing import FlaskClient

from service.web.logs import DropAccessLines, JsonFormatter, JsonHandler, scrub


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def access(text: str) -> list[dict[str, object]]:
    return [e for e in lines(text) if e["logger"] == "kfhir.access"]


@pytest.mark.parametrize("raw, shown", [
    ('"GET /api/v1/administrations?patient_identifier=urn:oid:1|MRN-1001 HTTP/1.1" 200',
     '"GET /api/v1/administrations?… HTTP/1.1" 200'),
    ("GET /fhir/Patient?identifier=mrn|42&name=Alpha HTTP/1.1", "GET /fhir/Patient?… HTTP/1.1"),
    ("fetching https://ehr.example/fhir/Patient?name=Alpha failed", "fetching https://ehr.example/fhir/Patient?… failed"),
    ("POST /fhir HTTP/1.1", "POST /fhir HTTP/1.1"),
    ("is this a question? yes", "is this a question? yes"),
    ("\x1b[33mPress CTRL+C to quit\x1b[0m", "Press CTRL+C to quit"),
])
def test_query_strings_are_cut_from_every_message(raw: str, shown: str) -> None:
    assert scrub(raw) == shown


def test_werkzeug_access_lines_are_dropped_ours_replace_them() -> None:
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '127.0.0.1 - - [x] "%s" %s %s',
                               ("GET /fhir/Patient/1 HTTP/1.1", "200", "-"), None)
    assert not DropAccessLines().filter(record)
    startup = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, "Running on %s", ("http://x",), None)
    assert DropAccessLines().filter(startup)


def test_exceptions_are_logged_by_type_and_stack_without_their_message() -> None:
    try:
        try:
            raise KeyError("DEMO-0001")
        except KeyError as exc:
            raise ValueError("birth date 1980-04-12 of Alpha Testpatient") from exc
    except ValueError:
        import sys
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = JsonFormatter().format(record)
    entry = json.loads(text)
    assert entry["exception"]["type"] == "ValueError" and entry["exception"]["caused_by"] == ["KeyError"]
    assert "test_logs.py" in entry["exception"]["stack"][0]
    assert "DEMO-0001" not in text and "1980" not in text and "Alpha" not in text


def test_every_request_logs_one_json_access_line_with_its_route_template(
        client: FlaskClient, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    response = client.get("/api/v1/administrations?patient_identifier=DEMO-0001&limit=2",
                          headers={"X-Request-ID": "trace-42"})
    assert response.headers["X-Request-ID"] == "trace-42"
    [entry] = access(capsys.readouterr().err)
    assert entry["request_id"] == "trace-42" and entry["method"] == "GET"
    assert entry["route"] == "/api/v1/<plural>"
    assert entry["status"] == response.status_code and isinstance(entry["duration_ms"], float)
    assert "client_id" in entry
    assert "DEMO" not in json.dumps(entry)


def test_a_request_id_we_would_not_log_safely_is_replaced(client: FlaskClient,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    response = client.get("/fhir/Patient/unknown-id", headers={"X-Request-ID": 'x" injected {"level": "INFO"}'})
    generated = response.headers["X-Request-ID"]
    assert len(generated) == 32 and generated.isalnum()
    [entry] = access(capsys.readouterr().err)
    assert entry["request_id"] == generated
    assert entry["route"] == "/fhir/<resource_type>/<resource_id>" and entry["status"] in (401, 404)


def test_an_unrouted_path_is_logged_without_it(client: FlaskClient, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    client.get("/no/such/DEMO-0001")
    [entry] = access(capsys.readouterr().err)
    assert entry["route"] is None and entry["status"] == 404
    assert "DEMO-0001" not in json.dumps(entry)


def test_lines_logged_inside_a_request_carry_its_id_and_client(app: Flask,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    @app.get("/probe")
    def probe() -> str:
        g.client_id = "clinic-app"
        logging.getLogger("service.probe").warning("looked at %s", "something")
        return "ok"

    capsys.readouterr()
    app.test_client().get("/probe", headers={"X-Request-ID": "abc"})
    entries = lines(capsys.readouterr().err)
    probe_line = next(e for e in entries if e["logger"] == "service.probe")
    assert probe_line["request_id"] == "abc" and probe_line["client_id"] == "clinic-app"
    assert next(e for e in entries if e["logger"] == "kfhir.access")["client_id"] == "clinic-app"


def test_the_app_logs_through_one_json_handler(app: Flask) -> None:
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, JsonHandler)]
    assert len(handlers) == 1
    assert any(isinstance(f, DropAccessLines) for f in logging.getLogger("werkzeug").filters)
