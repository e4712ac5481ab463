"""sandbox-check against the HAPI FHIR 8.8.0 JPA peer (tests/peers/hapi/server), our IG loaded and request
validation on, holding the demo data (its prescriber has NPI 9990000017, which sandbox-check once reused): every
delivery mode passes, twice in a row on the same server, cleanup included."""
from __future__ import annotations

import pytest
from peers.hapi_server import HapiServer

from service.demo import demo_records
from service.exchange.client import FhirClient
from service.exchange.sandbox import run
from service.mapping import map_record


@pytest.fixture(scope="module")
def hapi_with_demo_data(hapi_server: HapiServer) -> HapiServer:
    """The demo treatment plan (with the demo prescriber) on the peer, whatever ran on it before."""
    kind, record = demo_records()[0]
    FhirClient(hapi_server.base_url, timeout=120).push(map_record(kind, record).bundle, "transaction")
    return hapi_server


@pytest.mark.parametrize("mode", ["transaction", "batch", "conditional"])
def test_sandbox_check_passes_twice_against_the_hapi_peer(hapi_with_demo_data: HapiServer, mode: str) -> None:
    for _ in range(2):
        report = run(FhirClient(hapi_with_demo_data.base_url, timeout=120), mode, cleanup=True)
        assert report.passed and {s.status for s in report.steps} == {"pass"}, report.table()
        assert report.software == "HAPI FHIR Server 8.8.0"
    if mode == "batch":  # HAPI's statement names transaction only, and takes batches all the same
        assert "sent as batch all the same" in report.step("push treatment-plan").message
