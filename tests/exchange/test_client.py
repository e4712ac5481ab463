"""The FHIR client against a live FHIR server (our own facade on loopback, playing the EHR)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.serving import live_server

from service.domain.kinds import KINDS
from service.exchange.client import FhirClient, FhirError
from service.mapping import default_mapper

GOLDEN = Path(__file__).resolve().parents[1] / "mapping" / "golden"
MRN = {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-1001"}


def bundle(kind: str, **changes: Any) -> dict[str, Any]:
    record = json.loads((GOLDEN / f"{kind}.record.json").read_text(encoding="utf-8"))
    record.pop("_scenario")
    schema = KINDS[kind].schema()
    return default_mapper().to_bundle(kind, schema.dump(schema.load(record | changes)))


@pytest.fixture
def ehr(tmp_path: Path) -> Iterator[FhirClient]:
    with live_server(f"sqlite:///{tmp_path / 'ehr.db'}", tmp_path, KFHIR_LOG_LEVEL="WARNING") as live:
        yield FhirClient(live.base, live.bearer)


def test_capabilities_of_an_r4_server(ehr: FhirClient) -> None:
    found = ehr.capabilities()
    assert found.fhir_version == "4.0.1" and found.transaction and found.batch
    assert found.supports("MedicationAdministration", "update")


@pytest.mark.parametrize("mode", ["transaction", "batch", "conditional"])
def test_a_plan_then_its_session_arrive_and_read_back_unchanged(ehr: FhirClient, mode: str) -> None:
    plan = bundle("treatment-plan", external_id="plan-7", patient={"identifier": MRN})
    session = bundle("administration")
    for sent in (plan, session):
        written = ehr.push(sent, mode)
        assert len(written) == len(sent["entry"]) and all(w.id for w in written)
        assert ehr.verify(sent, written) == []
    # sending the same records again changes nothing: no second patient, the same resources
    again = ehr.push(session, mode)
    assert [w.id for w in again] == [w.id for w in ehr.push(session, mode)]
    assert len(list(ehr.search("Patient", {"identifier": f"{MRN['system']}|{MRN['value']}"}))) == 1


def test_pull_follows_next_links_to_the_end(ehr: FhirClient) -> None:
    ehr.push(bundle("treatment-plan", external_id="plan-7", patient={"identifier": MRN}))
    ehr.push(bundle("administration"))
    (patient,) = ehr.search("Patient", {"identifier": f"{MRN['system']}|{MRN['value']}"})
    pulled = list(ehr.search("Observation", {"patient": patient["id"], "_count": "2"}))
    # the session's five vital signs and one score, and the plan's pregnancy status at screening
    assert len(pulled) == 7 and len({o["id"] for o in pulled}) == 7


def test_a_stale_update_is_a_conflict_to_reconcile(ehr: FhirClient) -> None:
    written = ehr.push(bundle("treatment-plan", external_id="plan-7", patient={"identifier": MRN}))
    plan = ehr.read(written[0].resource_type, written[0].id)
    ehr.update(plan | {"status": "on-hold"}, plan["meta"]["versionId"])
    with pytest.raises(FhirError) as stale:
        ehr.update(plan, plan["meta"]["versionId"])
    assert stale.value.conflict and not stale.value.retryable


def test_a_refused_resource_reads_as_the_servers_outcome(ehr: FhirClient) -> None:
    with pytest.raises(FhirError) as refused:
        ehr.json("POST", "Patient", {"resourceType": "Patient", "gender": "x"})
    assert refused.value.status == 422 and not refused.value.retryable
    assert "Patient.gender" in refused.value.message
