"""The request's app and public root: without KFHIR_BASE_URL, the root is the request's host URL (made once a scheme
and Host, as werkzeug makes it each request)."""
from __future__ import annotations

import pytest
from flask import Flask, request

from service.web import current


@pytest.mark.parametrize("base_url", [
    "http://localhost", "http://localhost:5000", "https://ehr.example", "https://ehr.example:443",
    "http://EHR.Example:8080", "http://xn--mller-kva.example", "http://[::1]:8080", "https://a.b.c.example:8443",
])
def test_the_public_root_is_the_requests_host_url_without_its_slash(app: Flask, base_url: str) -> None:
    assert not app.extensions["kfhir"].settings.base_url
    for _ in range(2):  # the second time from the memo
        with app.test_request_context("/fhir/Patient/x", base_url=base_url):
            assert current.public_root() == request.host_url.rstrip("/")

