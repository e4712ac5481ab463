"""sandbox-check against the two FHIR servers we did not write (tests/peers/): HAPI FHIR 8.8.0 JPA (our IG
loaded, request validation on) and Medplum's FHIR router, each holding the demo data (its prescriber has NPI
9990000017, which sandbox-check once reused): every delivery mode passes, twice in a row, cleanup included."""
from __future__ import annotations

import pytest
from exchange.conftest import Peer

from service.demo import demo_records
from service.exchange.client import FhirClient
from service.exchange.sandbox import run
from service.mapping import map_record

SOFTWARE = {"hapi": "HAPI FHIR Server 8.8.0", "medplum": "Medplum FHIR router (in-memory repository) 4.5.2"}


@pytest.mark.parametrize("mode", ["transaction", "batch", "conditional"])
def test_sandbox_check_passes_twice_against_each_peer_holding_the_demo_data(ehr_peer: Peer, mode: str) -> None:
    kind, record = demo_records()[0]   # the demo plan, with the demo prescriber
    FhirClient(ehr_peer.base_url, timeout=120).push(map_record(kind, record).bundle, "transaction")
    for _ in range(2):
        report = run(FhirClient(ehr_peer.base_url, timeout=120), mode, cleanup=True)
        assert report.passed and {s.status for s in report.steps} == {"pass"}, report.table()
        assert report.software == SOFTWARE[ehr_peer.name] and report.fhir_version == "4.0.1"
    batch_declared = ehr_peer.name == "medplum"   # HAPI's statement names transaction only, takes batches
    noted = "sent as batch all the same" in report.step("push treatment-plan").message
    assert noted == (mode == "batch" and not batch_declared)
