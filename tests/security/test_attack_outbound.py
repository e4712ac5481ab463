"""Attack: our outbound credentials following a server's links elsewhere (issue 20, item 8).

A server answering a search with `next=http://other-host/...` received our bearer token on the next request;
408 (Request Timeout) was not retried while 501 (Not Implemented, which no retry mends) was. Two servers on
loopback play the EHR and the other host."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service.exchange.auth import Bearer
from service.exchange.client import FhirClient, FhirError

TOKEN = "secret-token"  # noqa: S105 - what must not leave the endpoint's origin


class Server:
    """A loopback HTTP server answering every GET with `status` and `body`; it keeps the Authorization headers."""

    def __init__(self) -> None:
        self.status, self.body, self.seen = 200, {}, []  # type: ignore[var-annotated]
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                state.seen.append(self.headers.get("Authorization"))
                data = json.dumps(state.body).encode()
                self.send_response(state.status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    ehr, other = Server(), Server()
    yield ehr, other
    ehr.close()
    other.close()


def test_a_next_link_to_another_origin_is_refused_and_gets_no_credentials(servers: tuple[Server, Server]) -> None:
    ehr, other = servers
    ehr.body = {"resourceType": "Bundle", "type": "searchset", "entry": [],
                "link": [{"relation": "next", "url": f"{other.base}/Patient?page=2"}]}
    client = FhirClient(ehr.base, Bearer(TOKEN))

    with pytest.raises(FhirError) as refused:
        list(client.search("Patient", {"identifier": "x"}))

    assert other.seen == []
    assert "another server" in refused.value.message and not refused.value.retryable
    assert ehr.seen == [f"Bearer {TOKEN}"]


def test_a_next_link_on_the_same_origin_is_followed(servers: tuple[Server, Server]) -> None:
    ehr, _ = servers
    ehr.body = {"resourceType": "Bundle", "type": "searchset", "entry": [],
                "link": [{"relation": "next", "url": f"{ehr.base}/Patient?page=2"}]}
    client = FhirClient(ehr.base, Bearer(TOKEN))

    assert list(client.search("Patient", {"identifier": "x"})) == []  # the same empty page again: the end
    assert ehr.seen == [f"Bearer {TOKEN}"] * 2


@pytest.mark.parametrize(("status", "retryable"), [(408, True), (429, True), (503, True), (501, False)])
def test_what_a_retry_can_mend_is_retryable(servers: tuple[Server, Server], status: int, retryable: bool) -> None:
    ehr, _ = servers
    ehr.status, ehr.body = status, {"resourceType": "OperationOutcome", "issue": []}

    with pytest.raises(FhirError) as failed:
        FhirClient(ehr.base, Bearer(TOKEN)).json("GET", "Patient/1")

    assert failed.value.status == status and failed.value.retryable is retryable
