"""The exchange against both FHIR servers we did not write (HAPI FHIR 8.8.0 JPA and Medplum's FHIR router), in
every delivery mode: records through the outbox worker, read back as sent, sent again without duplicates, an edit
becoming a new version of the same resource, and pulled back into a fresh database (again: nothing changes).

Differences between the peers the client handles, each met here: version ids (HAPI 1, 2, 3; Medplum UUIDs: the
client compares them, never counts them); paging (HAPI `next` links; Medplum only `total`, followed with
`_offset`); reference search (Medplum matches `subject=Patient/123`, not a bare id: the client sends the first);
HAPI refuses a batch whose entries refer to each other (the client sends waves) and does not declare batch."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from exchange.conftest import Peer, endpoints_file
from exchange.test_outbox_hapi import assert_once_each, identified, records_of
from factories import PATIENT, administration, adverse_event, treatment_plan
from support.databases import copy_sqlite

from service.app.pull import pull
from service.app.runtime import Runtime
from service.config import Settings
from service.exchange.client import FhirClient, Written
from service.exchange.outbox import JobQuery, enqueue
from service.exchange.worker import Worker
from service.store.engine import session as transaction
from service.store.records import ListQuery

MRN = "https://clinic.example/mrn"


def runtime_for(database_url: str, folder: Path, peer: Peer, mode: str) -> Runtime:
    folder.mkdir(exist_ok=True)
    path = endpoints_file(folder, {"name": peer.name, "base_url": peer.base_url, "mode": mode, "timeout_s": 120})
    return Runtime.build(Settings.load({"database_url": database_url, "endpoints_file": str(path)}, environ={}))


@pytest.mark.parametrize("mode", ["transaction", "batch", "conditional"])
def test_records_reach_the_peer_once_change_into_new_versions_and_come_back(
        ehr_peer: Peer, mode: str, database_url: str, tmp_path: Path, sqlite_template: Path) -> None:
    runtime = runtime_for(database_url, tmp_path / "clinic", ehr_peer, mode)
    client = FhirClient(ehr_peer.base_url, timeout=120)
    source = f"{ehr_peer.name}-{mode}-{uuid.uuid4().hex[:8]}"
    patient = PATIENT | {"identifier": {"system": MRN, "value": source}}
    for kind, record in (("treatment-plan", treatment_plan(source=source, patient=patient)),
                         ("administration", administration(source=source, patient=patient)),
                         ("adverse-event", adverse_event(source=source, patient=patient,
                                                         administration_external_id="adm-1"))):
        runtime.intake.submit(kind, record)
    worker = Worker(runtime.outbox, runtime.endpoints.all())
    try:
        worker.drain()
        jobs = runtime.outbox.list(JobQuery())
        assert [(j.state, j.last_error) for j in jobs] == [("done", None)] * 3
        written = [[Written(w["resourceType"], w["id"], w["version"], w["status"]) for w in j.written or []]
                   for j in jobs]
        assert [p for job, w in zip(jobs, written, strict=True) for p in client.verify(job.payload, w)] == []

        # Sent again: the same resources, no second patient.
        with transaction(runtime.engine, write=True) as session:
            for job in jobs:
                enqueue(session, runtime.store.get(job.record_kind, job.record_id), job.payload, runtime.endpoints.all())
        assert worker.drain().done == 3
        assert_once_each(client, list(records_of(runtime)))
        assert len(identified(client, "Patient", MRN, source)) == 1

        # An edit: a new version of the same MedicationAdministration, the old one still readable.
        session_record = next(r for r in runtime.store.list(ListQuery(kind="administration", limit=100))
                              if r.source == source)
        given = next(w for w in written[1] if w.resource_type == "MedicationAdministration")
        before = client.read("MedicationAdministration", given.id)
        runtime.intake.replace("administration", session_record.id, session_record.version,
                               session_record.content | {"dose_mg": 40})
        assert worker.drain().done == 1
        after = client.read("MedicationAdministration", given.id)
        assert after["meta"]["versionId"] != before["meta"]["versionId"]
        assert after["dosage"]["dose"]["value"] == 40 and before["dosage"]["dose"]["value"] == 35
        old = client.read("MedicationAdministration", f"{given.id}/_history/{before['meta']['versionId']}")
        assert old["dosage"]["dose"]["value"] == 35

        # Pulled into a fresh database: the three records; pulled again: nothing written.
        copy_sqlite(sqlite_template, tmp_path / "fresh.db")
        fresh = runtime_for(f"sqlite:///{tmp_path / 'fresh.db'}", tmp_path / "fresh", ehr_peer, mode)
        try:
            first = pull(client, fresh, f"{MRN}|{source}")
            assert first.patients == 1 and sorted(k[0] for k in records_of(fresh)) == [
                "administration", "adverse-event", "treatment-plan"]
            assert records_of(fresh)[("administration", source, "adm-1")]["dose_mg"] == 40
            again = pull(client, fresh, f"{MRN}|{source}")
            assert again.written == 0 and again.fetched == first.fetched
        finally:
            fresh.engine.dispose()
    finally:
        runtime.engine.dispose()

