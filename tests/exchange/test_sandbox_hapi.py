"""sandbox-check against the HAPI FHIR 8.8.0 JPA peer (tests/peers/hapi/server), our IG loaded and
request validation on: the scripted exchange must pass against a real EHR-grade server too."""
from __future__ import annotations

from peers.hapi_server import HapiServer

from service.exchange.client import FhirClient
from service.exchange.sandbox import run


def test_sandbox_check_passes_against_the_hapi_peer(empty_hapi_server: HapiServer) -> None:
    """On a peer of its own: the session's peer holds the demo data, whose practitioner has the sandbox's NPI
    and another name, so reading back would differ there."""
    report = run(FhirClient(empty_hapi_server.base_url), "transaction")
    assert report.passed, report.table()
    again = run(FhirClient(empty_hapi_server.base_url), "transaction")  # the same records again: no duplicates
    assert again.passed, again.table()
    assert "1 patient(s)" in again.steps[1].message
