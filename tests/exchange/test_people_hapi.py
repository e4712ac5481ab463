"""People kept current at a real EHR (HAPI FHIR 8.8.0 JPA, tests/peers): whatever order the outbox's jobs are
delivered in, the EHR ends with the person as we hold it now, merged into its own Patient so that what only the
EHR holds (an address, a phone, its own identifiers) stays (service/exchange/people.py)."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from exchange.conftest import endpoints_file
from factories import assessment
from peers.hapi_server import HapiServer

from service.app.people import current_patient
from service.app.pull import pull
from service.app.runtime import Runtime
from service.config import Settings
from service.exchange.client import FhirClient
from service.exchange.worker import Worker

MRN_SYSTEM = "https://clinic.example/mrn"


class Ehr:
    """Our service with the HAPI peer as its one endpoint, a worker, and a client that reads HAPI directly."""

    def __init__(self, runtime: Runtime, base_url: str) -> None:
        self.runtime = runtime
        self.worker = Worker(runtime.outbox, runtime.endpoints.all())
        self.client = FhirClient(base_url, timeout=120)
        self.mrn = {"system": MRN_SYSTEM, "value": f"P5-{uuid.uuid4().hex[:10]}"}
        self.base_url = base_url
        self.source = f"p5-{uuid.uuid4().hex[:8]}"

    def send(self, external_id: str, at: str, **demographics: Any) -> None:
        self.runtime.intake.submit("assessment", assessment(source=self.source, external_id=external_id, at=at,
                                                            patient={"identifier": self.mrn, **demographics}))

    def pull(self) -> int:
        return pull(self.client, self.runtime, f"{self.mrn['system']}|{self.mrn['value']}").written

    def ours(self) -> dict[str, Any]:
        held = current_patient(self.runtime.engine, self.mrn["system"], self.mrn["value"])
        assert held is not None
        return held

    def patient(self) -> dict[str, Any]:
        (held,) = self.client.search("Patient", {"identifier": f"{self.mrn['system']}|{self.mrn['value']}"})
        return held


def _ehr(mode: str, base_url: str, database_url: str, tmp_path: Path) -> Iterator[Ehr]:
    path = endpoints_file(tmp_path, {"name": "hapi", "base_url": base_url, "mode": mode, "timeout_s": 120})
    runtime = Runtime.build(Settings.load({"database_url": database_url, "endpoints_file": str(path)}, environ={}))
    yield Ehr(runtime, base_url)
    runtime.engine.dispose()


@pytest.fixture(params=["transaction", "batch", "conditional"])
def ehr(request: pytest.FixtureRequest, hapi_server: HapiServer, database_url: str, tmp_path: Path) -> Iterator[Ehr]:
    yield from _ehr(request.param, hapi_server.base_url, database_url, tmp_path)


@pytest.fixture
def ehr_tx(hapi_server: HapiServer, database_url: str, tmp_path: Path) -> Iterator[Ehr]:
    """One push mode is enough where what is tested is the pull."""
    yield from _ehr("transaction", hapi_server.base_url, database_url, tmp_path)


def test_jobs_delivered_out_of_order_leave_the_ehr_with_the_current_patient(ehr: Ehr) -> None:
    """Three records, each changing the patient; their jobs go out newest first and the middle one last (a late
    retry, or parallel workers): each sends the patient as held at send time, so the older name never returns."""
    ehr.send("asmt-1", "2026-01-05T10:00:00+00:00")
    ehr.send("asmt-2", "2026-02-05T10:00:00+00:00", name={"family": "Early", "given": ["Ada"]}, sex="female")
    ehr.send("asmt-3", "2026-03-05T10:00:00+00:00", name={"family": "Late", "given": ["Ada"]},
             birth_date="1971-02-03")
    jobs = ehr.worker.outbox.claim(ehr.worker.name, ["hapi"], limit=3)
    assert len(jobs) == 3  # three records, three business keys: nothing holds one back for another
    middle = next(e["resource"] for e in jobs[1].payload["entry"] if e["resource"]["resourceType"] == "Patient")
    assert middle["name"] == [{"family": "Early", "given": ["Ada"]}]  # written when Early was the newest name
    for job in (jobs[2], jobs[0], jobs[1]):
        assert ehr.worker.deliver(job) == "done"
    held = ehr.patient()
    assert (held["name"], held["gender"], held["birthDate"]) == ([{"family": "Late", "given": ["Ada"]}], "female",
                                                                 "1971-02-03")


#: what the hospital's registration holds of the patient and a clinic record never carries
REGISTERED = {"address": [{"line": ["1 Harbour Road"], "city": "Portsmouth", "postalCode": "PO1 2AB"}],
              "telecom": [{"system": "phone", "value": "+44 23 9200 0000", "use": "home"}]}
HOSPITAL_ID = {"system": "https://hospital.example/patient-id", "value": "H-778"}


def register(ehr: Ehr, **more: Any) -> dict[str, Any]:
    """The patient as the hospital's registration created it at the EHR, another client than ours."""
    patient = {"resourceType": "Patient", "identifier": [ehr.mrn, HOSPITAL_ID], **REGISTERED,
               "name": [{"use": "official", "family": "Okafor", "given": ["Ada"], "prefix": ["Ms"]},
                        {"use": "nickname", "given": ["Dee"]}], **more}
    made: dict[str, Any] = ehr.client.json("POST", "Patient", patient)
    return made


def test_our_update_keeps_what_only_the_ehr_holds(ehr: Ehr) -> None:
    """A new family name from the clinic reaches the EHR's Patient; its address, phone, hospital identifier,
    nickname and the prefix of its name stay; birth date and sex, which it lacked, are filled."""
    register(ehr)
    ehr.send("asmt-1", "2026-03-05T10:00:00+00:00", name={"family": "Okafor-Reyes", "given": ["Ada"]},
             birth_date="1971-02-03", sex="female")
    assert ehr.worker.drain().done == 1
    held = ehr.patient()
    assert held["name"] == [{"use": "official", "family": "Okafor-Reyes", "given": ["Ada"], "prefix": ["Ms"]},
                            {"use": "nickname", "given": ["Dee"]}]
    assert (held["birthDate"], held["gender"]) == ("1971-02-03", "female")
    assert {k: held[k] for k in REGISTERED} == REGISTERED
    assert held["identifier"] == [ehr.mrn, HOSPITAL_ID]
    assert held["meta"]["versionId"] == "2"
    ehr.send("asmt-2", "2026-03-06T10:00:00+00:00")  # nothing new about the patient: no new version there
    assert ehr.worker.drain().done == 1 and ehr.patient()["meta"]["versionId"] == "2"


class Interleaved(FhirClient):
    """Our worker's client, with the hospital's clerk changing the patient at the EHR right after our first read
    of it (between our read and our write: what If-Match is for)."""

    def __init__(self, base_url: str, clerk: Any) -> None:
        super().__init__(base_url, timeout=120)
        self.clerk = clerk

    def search(self, resource_type: str, params: Any) -> Iterator[dict[str, Any]]:
        yield from super().search(resource_type, params)
        if resource_type == "Patient" and self.clerk is not None:
            clerk, self.clerk = self.clerk, None
            clerk()


def test_a_write_between_our_read_and_our_update_is_kept(ehr: Ehr) -> None:
    """The clerk adds a mobile number after our read: our versioned update is refused (HAPI: 409), read again and
    merged again, so the EHR ends with the clerk's number and our name."""
    made = register(ehr)
    mobile = {"system": "phone", "value": "+44 7700 900000", "use": "mobile"}

    def clerk() -> None:
        ehr.client.json("PUT", f"Patient/{made['id']}", {**made, "telecom": [*made["telecom"], mobile]})

    ehr.worker.clients["hapi"] = Interleaved(ehr.base_url, clerk)
    ehr.send("asmt-1", "2026-03-05T10:00:00+00:00", name={"family": "Okafor-Reyes", "given": ["Ada"]})
    assert ehr.worker.drain().done == 1
    held = ehr.patient()
    assert held["telecom"] == [*REGISTERED["telecom"], mobile]
    assert held["name"][0]["family"] == "Okafor-Reyes"
    assert held["meta"]["versionId"] == "3"  # registered, the clerk's update, ours


def test_a_pull_takes_the_ehrs_change_to_a_patient_we_hold(ehr_tx: Ehr) -> None:
    """Registration at the EHR corrects the family name and adds the birth date after our last record: the pull
    brings both into our Patient (a new version here); pulling again changes nothing; clinic records dated before
    the change arriving late change nothing; a clinic record dated after the EHR's change wins (newest first)."""
    ehr = ehr_tx
    ehr.send("asmt-1", "2026-03-05T10:00:00+00:00", name={"family": "Okafor", "given": ["Ada"]}, sex="female")
    assert ehr.worker.drain().done == 1
    at_ehr = ehr.patient()
    ehr.client.json("PUT", f"Patient/{at_ehr['id']}", {**at_ehr, "birthDate": "1971-02-03",
                                                       "name": [{"family": "Okafor-Reyes", "given": ["Ada"]}]})
    assert ehr.pull() >= 1
    assert ehr.ours() == {"identifier": ehr.mrn, "name": {"family": "Okafor-Reyes", "given": ["Ada"]},
                          "birth_date": "1971-02-03", "sex": "female"}
    assert ehr.pull() == 0  # nothing new there
    ehr.send("asmt-0", "2026-01-05T10:00:00+00:00", name={"family": "Okafor", "given": ["Ada"]})
    assert ehr.ours()["name"]["family"] == "Okafor-Reyes"
    # newest of the records, but dated before the EHR's change reached us: the pulled name still outranks it
    ehr.send("asmt-6", "2026-06-01T10:00:00+00:00", name={"family": "Okafor", "given": ["Ada"]})
    assert ehr.ours()["name"]["family"] == "Okafor-Reyes"
    time.sleep(1.1)  # a session after the EHR's change (records are dated to the second; the future is refused)
    ehr.send("asmt-9", datetime.now(UTC).isoformat(timespec="seconds"), name={"family": "Okafor",
                                                                                "given": ["Ada", "B."]})
    assert ehr.ours()["name"] == {"family": "Okafor", "given": ["Ada", "B."]}


def test_a_pull_does_not_take_back_our_own_older_push(ehr_tx: Ehr) -> None:
    """The EHR still holds the name our earlier job sent (the newer job waits in the outbox): that is our own
    value coming back, not a change the EHR made, though the EHR dated it after the newer record."""
    ehr = ehr_tx
    ehr.send("asmt-1", "2026-02-05T10:00:00+00:00", name={"family": "Early", "given": ["Ada"]})
    assert ehr.worker.drain().done == 1
    ehr.send("asmt-2", "2026-03-05T10:00:00+00:00", name={"family": "Late", "given": ["Ada"]})
    ehr.pull()
    assert ehr.ours()["name"]["family"] == "Late"
    assert ehr.worker.drain().done == 1 and ehr.patient()["name"][0]["family"] == "Late"
