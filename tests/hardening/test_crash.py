"""Crash safety and concurrency on PostgreSQL under gunicorn: a worker SIGKILLed in the middle of a transaction
Bundle leaves nothing of it behind, or all of it once its COMMIT was sent; parallel identical creates through several worker processes leave one row."""
from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from factories import administration
from hardening.db import counts, stored, wait_for_writer, wait_until_no_writer
from hardening.production import Production, production
from sqlalchemy import Engine, create_engine, text
from support.databases import fresh_database

FHIR = "application/fhir+json"
MRN = "https://hardening.example/mrn"
#: Entries a crash test's server takes in one transaction: long transactions (500 entries) give a signal time to
#: land mid-write, past the default entry cap (300)
LONG_TRANSACTION = "1000"
PARTIES = 8


@pytest.fixture
def database(tmp_path: Path, postgres_admin_url: str) -> Iterator[str]:
    with fresh_database("postgresql", postgres_admin_url, tmp_path) as url:
        yield url


@pytest.fixture
def monitor(database: str) -> Iterator[Engine]:
    engine = create_engine(database.replace("postgresql://", "postgresql+psycopg://", 1))
    yield engine
    engine.dispose()


def transaction(patients: int, tag: str) -> dict[str, Any]:
    """`patients` new Patients, each with an Observation that references it by urn:uuid."""
    entries: list[dict[str, Any]] = []
    for n in range(patients):
        full_url = f"urn:uuid:{uuid.uuid4()}"
        entries.append({"fullUrl": full_url, "request": {"method": "POST", "url": "Patient"}, "resource": {
            "resourceType": "Patient", "identifier": [{"system": MRN, "value": f"{tag}-{n}"}], "gender": "unknown"}})
        entries.append({"request": {"method": "POST", "url": "Observation"}, "resource": {
            "resourceType": "Observation", "status": "final", "code": {"text": "crash-safety probe"},
            "subject": {"reference": full_url}, "valueString": f"{tag}-{n}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def post_in_background(url: str, body: bytes, headers: dict[str, str]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def send() -> None:
        try:
            outcome.append(requests.post(url, data=body, headers=headers, timeout=(5, 120)))
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, outcome


def fhir_headers(server: Production, **extra: str) -> dict[str, str]:
    return {"Content-Type": FHIR, "Accept": FHIR, **server.headers, **extra}


def test_sigkill_of_a_worker_mid_transaction_leaves_nothing_half_written(
        database: str, monitor: Engine, tmp_path: Path) -> None:
    with production(database, tmp_path, KFHIR_WORKERS="1", KFHIR_MAX_BUNDLE_ENTRIES=LONG_TRANSACTION) as server:
        [worker] = server.wait_for_workers(1)
        before = counts(monitor)
        bundle = json.dumps(transaction(250, "KILL")).encode()
        thread, outcome = post_in_background(f"{server.base}/fhir", bundle, fhir_headers(server))
        waited = wait_for_writer(monitor)  # the worker's transaction has begun writing
        os.kill(worker, signal.SIGKILL)
        thread.join(timeout=60)
        assert isinstance(outcome[0], requests.ConnectionError), outcome  # the client never saw an answer
        wait_until_no_writer(monitor)  # PostgreSQL notices the dead client and rolls its transaction back
        # All or nothing: a Bundle's last rows go in one send with its COMMIT (store/pipeline.py), which PostgreSQL
        # carries out though the worker dies after sending it; killed before, nothing of it is left
        whole = stored(monitor, "Patient", "Observation")
        assert whole in (0, 500), f"a killed transaction left {whole} of its 500 resources behind"
        if whole == 0:
            assert counts(monitor) == before, "a killed transaction left rows behind"

        # gunicorn replaced the worker; the same Bundle again is stored whole
        server.wait_for_workers(1, exclude=frozenset({worker}))
        again = requests.post(f"{server.base}/fhir", data=bundle, headers=fhir_headers(server), timeout=(5, 120))
        assert again.status_code == 200, again.text
        resent = stored(monitor, "Patient", "Observation")
        assert resent == whole + 500
        print(f"SIGKILL {waited * 1000:.0f} ms into a 500-entry transaction: {whole} of 500 resources stored "
              f"(all or nothing); resent: {resent} resources stored")


def race(parties: int, send: Callable[[requests.Session], requests.Response]) -> list[requests.Response]:
    """`parties` threads, each with its own connection, send at the same instant."""
    barrier = threading.Barrier(parties)
    answers: list[Any] = []
    lock = threading.Lock()

    def one() -> None:
        with requests.Session() as own:
            barrier.wait(timeout=30)
            try:
                answer: Any = send(own)
            except requests.RequestException as exc:
                answer = exc
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=one) for _ in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(a, requests.Response) for a in answers), answers
    return answers


@pytest.fixture
def gunicorn(database: str, tmp_path: Path) -> Iterator[Production]:
    with production(database, tmp_path, KFHIR_WORKERS="4") as server:
        server.wait_for_workers(4)
        yield server


def test_parallel_identical_conditional_creates_through_four_workers_make_one_row(
        gunicorn: Production, monitor: Engine) -> None:
    for round_ in range(3):
        mrn = f"RACE-{round_}-{uuid.uuid4().hex[:8]}"
        body = json.dumps({"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}]})
        headers = fhir_headers(gunicorn, **{"If-None-Exist": f"identifier={MRN}|{mrn}"})
        answers = race(PARTIES, lambda s, b=body, h=headers: s.post(f"{gunicorn.base}/fhir/Patient", data=b,
                                                                     headers=h, timeout=(5, 60)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * (PARTIES - 1) + [201], [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        with monitor.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM fhir_resources WHERE resource_type = 'Patient' "
                                     "AND CAST(content AS TEXT) LIKE :mrn"), {"mrn": f"%{mrn}%"}).scalar()
        assert rows == 1


def test_parallel_identical_domain_posts_through_four_workers_make_one_record(
        gunicorn: Production, monitor: Engine) -> None:
    for round_ in range(3):
        record = administration(external_id=f"race-{round_}-{uuid.uuid4().hex[:8]}")
        headers = {"Content-Type": "application/json", **gunicorn.headers}
        answers = race(PARTIES, lambda s, r=record, h=headers: s.post(
            f"{gunicorn.base}/api/v1/administrations", json=r, headers=h, timeout=(5, 60)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * (PARTIES - 1) + [201], [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        with monitor.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM records WHERE external_id = :x"),
                                {"x": record["external_id"]}).scalar()
            versions = conn.execute(text("SELECT count(*) FROM record_versions v JOIN records r "
                                         "ON r.pk = v.record_pk WHERE r.external_id = :x"),
                                    {"x": record["external_id"]}).scalar()
        assert (rows, versions) == (1, 1)
