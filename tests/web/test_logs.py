"""Access log lines keep the path and status but never the query string (MRNs, names)."""
from __future__ import annotations

import logging

import pytest

from service.web.logs import DropQueryStrings


def line(*args: object) -> str:
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '%s - - [%s] "%s" %s %s', args, None)
    DropQueryStrings().filter(record)
    return record.getMessage()


@pytest.mark.parametrize("request_line, shown", [
    ("GET /api/v1/administrations?patient_identifier=urn:oid:1|MRN-1001 HTTP/1.1",
     "GET /api/v1/administrations?… HTTP/1.1"),
    ("GET /fhir/Patient?identifier=mrn|42&name=Alpha HTTP/1.1", "GET /fhir/Patient?… HTTP/1.1"),
    ("POST /fhir HTTP/1.1", "POST /fhir HTTP/1.1"),
])
def test_the_query_string_is_dropped(request_line: str, shown: str) -> None:
    logged = line("127.0.0.1", "28/Nov/2026 08:00:00", request_line, "200", "-")
    assert f'"{shown}" 200' in logged
    assert "MRN" not in logged and "Alpha" not in logged and "42" not in logged.split('"')[1]


def test_the_filter_is_installed_by_the_app(app: object) -> None:
    assert any(isinstance(f, DropQueryStrings) for f in logging.getLogger("werkzeug").filters)
