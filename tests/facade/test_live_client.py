"""The facade as an EHR sees it: a live `ketamine-fhir serve` on loopback, driven by the public FHIR
client `fhirpy` and by plain `requests` (status codes and headers R4 requires); races on both backends."""
from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cli.support import kfhir
from conftest import BACKENDS, postgres_url
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome as FhirpyOutcome
from fhirpy.base.exceptions import ResourceNotFound
from support.databases import fresh_database
from support.serving import LiveServer, live_server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "profiles" / "examples"
GOLDEN = ROOT / "tests" / "mapping" / "golden"
FHIR = "application/fhir+json"
MRN = "https://demo.ketamine-fhir.example/mrn"
TIMEOUT = (5, 30)


def _serve(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server for this module, on a database created for it (tests keep apart by giving every patient
    a fresh MRN); after every test of the module: no request was answered with a 5xx, nothing raised."""
    workdir = tmp_path_factory.mktemp(f"live-{backend}")
    pg = postgres_url() if backend == "postgresql" else None
    with fresh_database(backend, pg, workdir) as url, live_server(url, workdir) as live:
        yield live
    log = live.log.read_text()
    assert not re.search(r'HTTP/1\.1\S*" 5\d\d ', log) and "Traceback" not in log, log


@pytest.fixture(scope="module", params=BACKENDS[:1])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """On SQLite: through HTTP the facade is the same code on either backend (the in-process tests cover
    where the backends differ), except in a race, which runs on both (racing_server)."""
    yield from _serve(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=BACKENDS)
def racing_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server on each backend: conditional creates are claimed differently on each."""
    yield from _serve(request.param, tmp_path_factory)


@pytest.fixture
def http(server: LiveServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers.update({"Accept": FHIR} | server.headers)
        yield session


@pytest.fixture
def ehr(server: LiveServer) -> SyncFHIRClient:
    return SyncFHIRClient(server.base, authorization=server.headers["Authorization"],
                          extra_headers={"Accept": FHIR, "Content-Type": FHIR})


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def new_patient(mrn: str | None = None) -> dict[str, Any]:
    patient = example("Patient-demo-alpha")
    del patient["id"]
    patient["identifier"] = [{"system": MRN, "value": mrn or f"LIVE-{uuid.uuid4().hex[:10]}"}]
    return patient


def is_outcome(resp: requests.Response) -> bool:
    return bool(resp.content) and resp.json().get("resourceType") == "OperationOutcome"


# --- fhirpy plays the EHR -------------------------------------------------------------------

def test_fhirpy_creates_a_ketamine_session_with_its_patient_practitioner_and_encounter(ehr: SyncFHIRClient) -> None:
    patient = ehr.resource("Patient", **new_patient())
    patient.save()
    nurse_data = example("Practitioner-demo-nurse")
    del nurse_data["id"]
    nurse = ehr.resource("Practitioner", **nurse_data)
    nurse.save()
    enc_data = example("Encounter-iv-session-1")
    del enc_data["id"]
    enc_data.pop("reasonReference", None)
    enc_data["subject"] = {"reference": f"Patient/{patient.id}"}
    enc_data["participant"][0]["individual"] = {"reference": f"Practitioner/{nurse.id}"}
    encounter = ehr.resource("Encounter", **enc_data)
    encounter.save()
    ma_data = example("MedicationAdministration-iv-session-1")
    del ma_data["id"]
    for key in ("reasonReference", "request"):
        ma_data.pop(key, None)
    ma_data["subject"] = {"reference": f"Patient/{patient.id}"}
    ma_data["context"] = {"reference": f"Encounter/{encounter.id}"}
    ma_data["performer"] = [{"actor": {"reference": f"Practitioner/{nurse.id}"}}]
    ma = ehr.resource("MedicationAdministration", **ma_data)
    ma.save()

    assert ma.id and ma.id != "iv-session-1"  # the server assigns ids
    assert ma["meta"]["versionId"] == "1"
    back = ehr.reference("MedicationAdministration", ma.id).to_resource()
    assert back["subject"]["reference"] == f"Patient/{patient.id}"
    assert back["dosage"]["dose"] == ma_data["dosage"]["dose"]
    found = ehr.resources("MedicationAdministration").search(patient=f"Patient/{patient.id}").fetch_all()
    assert [r.id for r in found] == [ma.id]


def test_fhirpy_read_update_with_versions_and_a_stale_if_match_is_412(
        ehr: SyncFHIRClient, http: requests.Session, server: LiveServer) -> None:
    patient = ehr.resource("Patient", **new_patient())
    patient.save()
    first = ehr.reference("Patient", patient.id).to_resource()
    assert first["meta"]["versionId"] == "1"
    first["gender"] = "male" if first.get("gender") != "male" else "female"
    first.save()
    second = ehr.reference("Patient", patient.id).to_resource()
    assert second["meta"]["versionId"] == "2"
    assert second["gender"] == first["gender"]

    body = second.serialize()
    stale = http.put(f"{server.base}/Patient/{patient.id}", json=body, timeout=TIMEOUT,
                     headers={"Content-Type": FHIR, "If-Match": 'W/"1"'})
    assert stale.status_code == 412 and is_outcome(stale)
    fresh = http.put(f"{server.base}/Patient/{patient.id}", json=body, timeout=TIMEOUT,
                     headers={"Content-Type": FHIR, "If-Match": 'W/"2"'})
    assert fresh.status_code == 200 and fresh.headers["ETag"] == 'W/"3"'
    v1 = ehr.execute(f"Patient/{patient.id}/_history/1", method="get")
    assert v1["meta"]["versionId"] == "1" and v1["gender"] != second["gender"]


def test_fhirpy_reading_an_unknown_id_raises_not_found(ehr: SyncFHIRClient) -> None:
    with pytest.raises(ResourceNotFound):
        ehr.reference("Patient", f"nope-{uuid.uuid4().hex}").to_resource()


def test_fhirpy_an_invalid_resource_is_refused_with_the_servers_operation_outcome(ehr: SyncFHIRClient) -> None:
    bad = new_patient()
    bad["gender"] = "not-a-gender"
    with pytest.raises(FhirpyOutcome) as raised:
        ehr.resource("Patient", **bad).save()
    assert raised.value.resource["resourceType"] == "OperationOutcome"


def test_conditional_create_through_fhirpy_and_if_none_exist(
        ehr: SyncFHIRClient, http: requests.Session, server: LiveServer) -> None:
    mrn = f"COND-{uuid.uuid4().hex[:10]}"
    headers = {"Content-Type": FHIR, "If-None-Exist": f"identifier={MRN}|{mrn}"}
    created = http.post(f"{server.base}/Patient", json=new_patient(mrn), headers=headers, timeout=TIMEOUT)
    assert created.status_code == 201
    again = http.post(f"{server.base}/Patient", json=new_patient(mrn), headers=headers, timeout=TIMEOUT)
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    # fhirpy finds the one resource by the same business identifier
    found = ehr.resources("Patient").search(identifier=f"{MRN}|{mrn}").fetch_all()
    assert [p.id for p in found] == [created.json()["id"]]
    # a second resource with the same identifier makes the condition ambiguous: 412
    http.post(f"{server.base}/Patient", json=new_patient(mrn), headers={"Content-Type": FHIR}, timeout=TIMEOUT)
    ambiguous = http.post(f"{server.base}/Patient", json=new_patient(mrn), headers=headers, timeout=TIMEOUT)
    assert ambiguous.status_code == 412 and is_outcome(ambiguous)


def test_fhirpy_search_pages_through_every_resource_exactly_once(ehr: SyncFHIRClient, server: LiveServer) -> None:
    patient = ehr.resource("Patient", **new_patient())
    patient.save()
    obs = example("Observation-heart-rate-iv-session-1-intra")
    del obs["id"]
    obs["subject"] = {"reference": f"Patient/{patient.id}"}
    for key in ("encounter", "performer", "partOf"):
        obs.pop(key, None)
    ids = []
    for minute in range(23):
        body = copy.deepcopy(obs)
        body["effectiveDateTime"] = f"2026-03-02T09:{minute:02d}:00-05:00"
        created = ehr.resource("Observation", **body)
        created.save()
        ids.append(created.id)
    search = ehr.resources("Observation").search(subject=f"Patient/{patient.id}").limit(5)
    first_page = search.fetch_raw()
    assert "total" not in first_page and len(first_page["entry"]) == 5  # counted only when asked for
    assert search.count() == 23
    links = {link["relation"]: link["url"] for link in first_page["link"]}
    assert links["next"].startswith(server.base) and "_count=5" in links["next"]
    seen = [r.id for r in search.fetch_all()]
    assert len(seen) == 23 and sorted(seen) == sorted(ids)  # every one, none twice
    newest_first = ehr.resources("Observation").search(subject=f"Patient/{patient.id}").sort("-date").limit(3).fetch()
    assert [r["effectiveDateTime"][:16] for r in newest_first] == [
        "2026-03-02T09:22", "2026-03-02T09:21", "2026-03-02T09:20"]


def _mapped_bundle(kind: str, tmp_path: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """The transaction Bundle `ketamine-fhir map` prints for a golden record with `changes`."""
    record = json.loads((GOLDEN / f"{kind}.record.json").read_text())
    record.pop("_scenario", None)
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps(record | changes))
    out = kfhir("map", "--kind", kind, path, "--format", "json")
    assert out.returncode == 0, out.stderr
    bundle: dict[str, Any] = json.loads(out.stdout)["bundle"]
    return bundle


def test_fhirpy_posts_the_mapped_transaction_and_reads_and_searches_every_resource(
        ehr: SyncFHIRClient, server: LiveServer, tmp_path: Path) -> None:
    mrn = f"TX-{uuid.uuid4().hex[:10]}"
    patient = {"identifier": {"system": "urn:oid:2.16.840.1.113883.19.5", "value": mrn}}
    plan = _mapped_bundle("treatment-plan", tmp_path, {"external_id": f"plan-{mrn}", "patient": patient})
    # Bundles go to the base URL itself (fhirpy's execute("") would post to ".../fhir/", which is 404 here)
    assert ehr.execute(server.base, method="post", data=plan)["type"] == "transaction-response"  # the order
    bundle = _mapped_bundle("administration", tmp_path, {"external_id": f"session-{mrn}", "patient": patient,
                                                         "plan_external_id": f"plan-{mrn}"})
    assert bundle["type"] == "transaction"
    response = ehr.execute(server.base, method="post", data=bundle)
    assert response["type"] == "transaction-response"
    assert len(response["entry"]) == len(bundle["entry"])
    statuses = [e["response"]["status"].split()[0] for e in response["entry"]]
    assert set(statuses) <= {"200", "201"}, statuses
    locations = [e["response"]["location"].split("/_history")[0] for e in response["entry"]]
    for location in locations:
        rtype, rid = location.split("/")[-2:]
        assert ehr.reference(rtype, rid).to_resource().id == rid
    patients = ehr.resources("Patient").search(identifier=mrn).fetch_all()
    assert len(patients) == 1
    pid = patients[0].id
    mas = ehr.resources("MedicationAdministration").search(patient=pid).fetch_all()
    assert len(mas) == 1 and f"MedicationAdministration/{mas[0].id}" in {loc.split("/fhir/")[-1] for loc in locations}
    observations = ehr.resources("Observation").search(subject=f"Patient/{pid}").fetch_all()
    expected = sum(1 for b in (plan, bundle) for e in b["entry"] if e["resource"]["resourceType"] == "Observation")
    assert len(observations) == expected  # the session's readings and the plan's pregnancy status
    # posting the same Bundle again changes nothing: the conditional creates find the patient and practitioner
    ehr.execute(server.base, method="post", data=bundle)
    assert len(ehr.resources("Patient").search(identifier=mrn).fetch_all()) == 1


# --- plain requests: what R4 requires ----------------------------------------------------------

def test_create_answers_201_location_etag_and_last_modified(http: requests.Session, server: LiveServer) -> None:
    resp = http.post(f"{server.base}/Patient", json=new_patient() | {"id": "client-id"},
                     headers={"Content-Type": FHIR}, timeout=TIMEOUT)
    assert resp.status_code == 201
    body = resp.json()
    assert body["id"] != "client-id"
    assert resp.headers["Location"] == f"{server.base}/Patient/{body['id']}/_history/1"
    assert resp.headers["ETag"] == 'W/"1"'
    assert resp.headers["Last-Modified"].endswith("GMT")
    assert resp.headers["Content-Type"].startswith(FHIR)


def test_prefer_return_minimal_and_operation_outcome(http: requests.Session, server: LiveServer) -> None:
    minimal = http.post(f"{server.base}/Patient", json=new_patient(), timeout=TIMEOUT,
                        headers={"Content-Type": FHIR, "Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert "/_history/1" in minimal.headers["Location"]
    outcome = http.post(f"{server.base}/Patient", json=new_patient(), timeout=TIMEOUT,
                        headers={"Content-Type": FHIR, "Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 201 and is_outcome(outcome)


def test_delete_then_410_and_history_keeps_the_deleted_version(http: requests.Session, server: LiveServer) -> None:
    created = http.post(f"{server.base}/Patient", json=new_patient(), headers={"Content-Type": FHIR},
                        timeout=TIMEOUT).json()
    url = f"{server.base}/Patient/{created['id']}"
    deleted = http.delete(url, timeout=TIMEOUT)
    assert deleted.status_code in (200, 204)
    gone = http.get(url, timeout=TIMEOUT)
    assert gone.status_code == 410 and is_outcome(gone)
    history = http.get(f"{url}/_history", timeout=TIMEOUT)
    assert history.status_code == 200
    entries = history.json()["entry"]
    assert len(entries) == 2
    methods = sorted(e["request"]["method"] for e in entries)
    assert methods == ["DELETE", "POST"]
    assert http.get(f"{url}/_history/1", timeout=TIMEOUT).status_code == 200


BAD_REQUESTS: list[tuple[str, str, str, dict[str, str], bytes, int]] = [
    # id, method, path, headers, body, status
    ("unknown-type", "GET", "/Spaceship/1", {}, b"", 404),
    ("unknown-type-create", "POST", "/Spaceship", {"Content-Type": FHIR}, b'{"resourceType":"Spaceship"}', 404),
    ("patch", "PATCH", "/Patient/x", {"Content-Type": "application/json-patch+json"}, b"[]", 405),
    ("xml", "POST", "/Patient", {"Content-Type": "application/fhir+xml"},
     b'<Patient xmlns="http://hl7.org/fhir"/>', 415),
    ("truncated-json", "POST", "/Patient", {"Content-Type": FHIR}, b'{"resourceType": "Patient", "gen', 400),
    ("not-json", "POST", "/Patient", {"Content-Type": FHIR}, b"hello", 400),
    ("type-mismatch", "POST", "/Patient", {"Content-Type": FHIR}, b'{"resourceType": "Practitioner"}', 400),
    ("put-id-mismatch", "PUT", "/Patient/aaa", {"Content-Type": FHIR}, b'{"resourceType": "Patient", "id": "bbb"}',
     400),
    ("unknown-search-param", "GET", "/Patient?shoe-size=42", {}, b"", 400),
    ("malformed-date", "GET", "/Observation?date=yesterday", {}, b"", 400),
    ("malformed-date-prefix", "GET", "/Observation?date=zz2026-01-01", {}, b"", 400),
    ("malformed-date-month", "GET", "/Observation?date=2026-13-01", {}, b"", 400),
    ("malformed-count", "GET", "/Patient?_count=lots", {}, b"", 400),
    ("deep-json", "POST", "/Patient", {"Content-Type": FHIR},
     b'{"resourceType": "Patient", "x": ' + b"[" * 80 + b"]" * 80 + b"}", 400),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status"),
                         [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests_get_their_status_and_an_operation_outcome(
        http: requests.Session, server: LiveServer,
        method: str, path: str, headers: dict[str, str], body: bytes, status: int) -> None:
    resp = http.request(method, f"{server.base}{path}", data=body or None, headers=headers, timeout=TIMEOUT)
    assert resp.status_code == status, resp.text
    assert is_outcome(resp), resp.text


def test_unknown_search_parameter_is_ignored_with_lenient_handling(http: requests.Session, server: LiveServer) -> None:
    resp = http.get(f"{server.base}/Patient?shoe-size=42&_count=1", headers={"Prefer": "handling=lenient"},
                    timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.json()["type"] == "searchset"
    assert "shoe-size" not in resp.json()["link"][0]["url"]


def test_an_oversized_body_is_413_with_an_operation_outcome(tmp_path: Path) -> None:
    with fresh_database("sqlite", None, tmp_path) as url, \
            live_server(url, tmp_path, KFHIR_MAX_BODY_BYTES="2048") as small:
        patient = new_patient()
        patient["text"] = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">'
                           + "x" * 4096 + "</div>"}
        resp = requests.post(f"{small.base}/Patient", json=patient, headers={"Content-Type": FHIR} | small.headers,
                             timeout=TIMEOUT)
        assert resp.status_code == 413 and is_outcome(resp)
        search = requests.get(f"{small.base}/Patient", headers=small.headers, timeout=TIMEOUT).json()
        assert search["total"] == 0  # nothing stored


def test_nothing_bad_is_stored_and_no_error_was_a_500(http: requests.Session, server: LiveServer) -> None:
    marker = f"BAD-{uuid.uuid4().hex[:10]}"
    bad = new_patient(marker)
    bad["birthDate"] = "not-a-date"
    resp = http.post(f"{server.base}/Patient", json=bad, headers={"Content-Type": FHIR}, timeout=TIMEOUT)
    assert resp.status_code in (400, 422) and is_outcome(resp)
    found = http.get(f"{server.base}/Patient", params={"identifier": f"{MRN}|{marker}"}, timeout=TIMEOUT).json()
    assert found["total"] == 0
    assert not re.search(r'HTTP/1\.1\S*" 5\d\d ', server.log.read_text())


# --- concurrency ----------------------------------------------------------------------------

def _race(server: LiveServer, parties: int) -> tuple[str, list[tuple[int, str]]]:
    """`parties` threads, each with its own connection, post the same conditional create at once."""
    mrn = f"RACE-{uuid.uuid4().hex[:10]}"
    body = json.dumps(new_patient(mrn))
    headers = {"Content-Type": FHIR, "Accept": FHIR, "If-None-Exist": f"identifier={MRN}|{mrn}"} | server.headers
    barrier = threading.Barrier(parties)
    results: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def create() -> None:
        try:
            with requests.Session() as own:
                barrier.wait(timeout=30)
                resp = own.post(f"{server.base}/Patient", data=body, headers=headers, timeout=TIMEOUT)
                with lock:
                    results.append((resp.status_code, resp.json().get("id", resp.text)))
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return mrn, results


@pytest.mark.parametrize("round_", range(3))
def test_parallel_identical_conditional_creates_make_exactly_one_resource(racing_server: LiveServer,
                                                                          round_: int) -> None:
    server = racing_server
    parties = 12
    mrn, results = _race(server, parties)
    assert len(results) == parties
    assert {status for status, _ in results} <= {200, 201}, results
    assert [status for status, _ in results].count(201) == 1, results
    assert len({rid for _, rid in results}) == 1, results
    found = requests.get(f"{server.base}/Patient", params={"identifier": f"{MRN}|{mrn}"}, headers=server.headers,
                         timeout=TIMEOUT).json()
    assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == results[0][1]
