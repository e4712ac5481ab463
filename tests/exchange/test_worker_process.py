"""`ketamine-fhir worker`, `push` and `pull` as real processes against the HAPI peer: a worker killed with
SIGKILL in the middle of 50 records loses nothing and duplicates nothing once restarted; SIGTERM stops it
gracefully; push drains once; pull reads a patient back into a fresh database."""
from __future__ import annotations

import json
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from exchange.conftest import endpoints_file
from factories import PATIENT, assessment
from peers.hapi_server import HapiServer
from sqlalchemy import delete
from support.databases import copy_sqlite
from support.serving import KFHIR, script_env
from support.waiting import wait_until

from service.app.runtime import Runtime
from service.config import Settings
from service.exchange.client import FhirClient
from service.exchange.outbox import JobQuery
from service.store.engine import session as transaction
from service.store.models import OutboxJobRow

pytestmark = pytest.mark.both_backends  # worker processes share the queue through the database's locks

RECORD_SYSTEM = "https://ketamine-fhir.org/fhir/record/assessment"


def env_for(database_url: str, endpoints: Path) -> dict[str, str]:
    return script_env(database_url, KFHIR_ENDPOINTS_FILE=str(endpoints), KFHIR_LOG_LEVEL="WARNING")


def store_assessments(runtime: Runtime, source: str, count: int, patients: int) -> list[str]:
    """`count` assessments of `patients` new patients (unique to this test on the shared HAPI peer)."""
    for n in range(count):
        patient = PATIENT | {"identifier": {"system": "https://clinic.example/mrn", "value": f"{source}-{n % patients}"}}
        runtime.intake.submit("assessment", assessment(source=source, external_id=f"a-{n}", patient=patient,
                                                       score=n % 27))
    return [f"{source}/a-{n}" for n in range(count)]


@pytest.fixture
def setup(database_url: str, tmp_path: Path, hapi_server: HapiServer) -> tuple[Runtime, Path]:
    path = endpoints_file(tmp_path, {"name": "hapi", "base_url": hapi_server.base_url, "timeout_s": 60})
    runtime = Runtime.build(Settings.load({"database_url": database_url, "endpoints_file": str(path)}, environ={}))
    return runtime, path


def test_sigkill_mid_push_loses_nothing_and_duplicates_nothing(setup: tuple[Runtime, Path], database_url: str,
                                                               hapi_server: HapiServer, tmp_path: Path) -> None:
    runtime, endpoints = setup
    source = f"kill-{uuid.uuid4().hex[:8]}"
    values = store_assessments(runtime, source, 50, patients=5)
    outbox = runtime.outbox
    command = [str(KFHIR), "worker", "--endpoint", "hapi", "--lease", "3", "--poll", "0.2"]
    with (tmp_path / "first.log").open("wb") as log:
        first = subprocess.Popen(command, env=env_for(database_url, endpoints), cwd=tmp_path,
                                 stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_until(lambda: outbox.counts("hapi")["done"] >= 10, "the first worker to deliver 10 jobs", 180, 0.1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
        first.wait()
    halfway = outbox.counts("hapi")
    assert 10 <= halfway["done"] < 50, halfway  # killed in the middle, not after the end

    with (tmp_path / "second.log").open("wb") as log:
        second = subprocess.Popen(command, env=env_for(database_url, endpoints), cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_until(lambda: outbox.counts("hapi")["done"] == 50, "the restarted worker to deliver every job", 300, 0.1)
        second.send_signal(signal.SIGTERM)  # graceful: finishes the job in hand, then exits 0
        assert second.wait(timeout=60) == 0
        assert "worker stopped: " in (tmp_path / "second.log").read_text(encoding="utf-8")
    finally:
        second.kill()
        second.wait()

    assert outbox.counts("hapi") == {"queued": 0, "in_flight": 0, "done": 50, "dead": 0}
    jobs = outbox.list(JobQuery(endpoint="hapi", limit=100))
    assert len(jobs) == 50 and all(j.written for j in jobs)
    client = FhirClient(hapi_server.base_url, timeout=60)
    found = {v: len(list(client.search("Observation", {"identifier": f"{RECORD_SYSTEM}|{v}"}))) for v in values}
    assert found == dict.fromkeys(values, 1)
    patients = {n: len(list(client.search("Patient", {"identifier": f"https://clinic.example/mrn|{source}-{n}"})))
                for n in range(5)}
    assert patients == dict.fromkeys(range(5), 1)
    runtime.engine.dispose()


def test_push_drains_once_and_pull_reads_back_into_a_fresh_database(
        setup: tuple[Runtime, Path], database_url: str, tmp_path: Path, sqlite_template: Path) -> None:
    runtime, endpoints = setup
    source = f"push-{uuid.uuid4().hex[:8]}"
    store_assessments(runtime, source, 4, patients=1)
    with transaction(runtime.engine, write=True) as session:  # one record stored before the endpoint existed
        session.execute(delete(OutboxJobRow).where(OutboxJobRow.business_key == f"assessment/{source}/a-3"))
    env = env_for(database_url, endpoints)
    pushed = subprocess.run([str(KFHIR), "push", "--endpoint", "hapi", "--format", "json"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert pushed.returncode == 0, pushed.stderr
    summary = json.loads(pushed.stdout)
    assert (summary["done"], summary["dead"], summary["states"]["queued"]) == (3, 0, 0)
    assert summary["median_ms_per_job"] > 0
    backfilled = subprocess.run([str(KFHIR), "push", "--endpoint", "hapi", "--all"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
    assert backfilled.returncode == 0, backfilled.stderr
    assert "1 record queued for hapi (not queued when stored)" in backfilled.stdout and "1 delivered" in backfilled.stdout
    nothing = subprocess.run([str(KFHIR), "push", "--endpoint", "hapi", "--all"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert nothing.returncode == 0 and "0 delivered" in nothing.stdout and "queued for" not in nothing.stdout
    unknown = subprocess.run([str(KFHIR), "push", "--endpoint", "nowhere"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert unknown.returncode == 2 and "no endpoint named 'nowhere'" in unknown.stderr

    fresh = tmp_path / "fresh.db"
    copy_sqlite(sqlite_template, fresh)
    fresh_env = env_for(f"sqlite:///{fresh}", endpoints)
    patient = f"https://clinic.example/mrn|{source}-0"
    for expected_written in (5, 0):  # the Patient and four Observations; then nothing new
        pulled = subprocess.run([str(KFHIR), "pull", "--endpoint", "hapi", "--patient", patient, "--format", "json"],
                                env=fresh_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert pulled.returncode == 0, pulled.stderr
        report = json.loads(pulled.stdout)
        assert (report["patients"], report["written"], len(report["records"])) == (1, expected_written, 4)
    missing = subprocess.run([str(KFHIR), "pull", "--endpoint", "hapi", "--patient", f"{patient}-nobody"],
                             env=fresh_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "0 patient(s)" in missing.stdout
    runtime.engine.dispose()
