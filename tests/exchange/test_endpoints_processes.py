"""A web process and a worker process that read different settings see the same endpoints (issue 16 item 7): the
worker alone is given KFHIR_ENDPOINTS_FILE, the web process none; records posted to the web process are queued
for the file's endpoint, for one added later with `ketamine-fhir endpoints add` (the running worker takes it up),
and no longer for one disabled. The EHR is a small real HTTP server (tests/support/ehr.py)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests
from exchange.conftest import endpoints_file
from factories import assessment
from sqlalchemy import Engine, select
from support.ehr import ehr_server
from support.serving import KFHIR, LiveServer, live_server, run_script, script_env
from support.waiting import wait_until

from service.store.engine import make_engine
from service.store.engine import session as transaction
from service.store.models import EndpointRow, OutboxJobRow

pytestmark = pytest.mark.both_backends


def test_web_and_worker_processes_queue_and_deliver_for_the_same_endpoints(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)

    def states(external_id: str) -> dict[str, str]:
        with transaction(engine) as s:
            return {job.endpoint: job.state for job in s.scalars(select(OutboxJobRow).where(
                OutboxJobRow.business_key == f"assessment/clinic-a/{external_id}"))}

    def post(server: LiveServer, external_id: str) -> None:
        response = requests.post(f"{server.base.removesuffix('/fhir')}/api/v1/assessments",
                                 json=assessment(external_id=external_id), headers=server.headers, timeout=30)
        assert response.status_code == 201, response.text

    with ehr_server() as ehr, live_server(database_url, tmp_path, KFHIR_LOG_LEVEL="WARNING") as web:
        path = endpoints_file(tmp_path, {"name": "hospital", "base_url": f"{ehr}/ok"})
        env = script_env(database_url, KFHIR_ENDPOINTS_FILE=str(path), KFHIR_LOG_LEVEL="WARNING")
        with (tmp_path / "worker.log").open("wb") as log:
            worker = subprocess.Popen([str(KFHIR), "worker", "--poll", "0.2"], env=env, cwd=tmp_path,
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: worker.poll() is not None or _names(engine) == ["hospital"], "the worker's import", 60)
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            post(web, "first")  # the web process never read the file
            wait_until(lambda: states("first") == {"hospital": "done"}, "first delivered to hospital", 60, 0.1)

            no_file = script_env(database_url, KFHIR_LOG_LEVEL="WARNING")
            added = run_script("endpoints", "add", "registry", "--base-url", f"{ehr}/ok", env=no_file)
            assert added.returncode == 0, added.stderr
            post(web, "second")
            wait_until(lambda: states("second") == {"hospital": "done", "registry": "done"}, "second to both", 60, 0.1)

            assert run_script("endpoints", "disable", "hospital", env=no_file).returncode == 0
            post(web, "third")
            wait_until(lambda: states("third") == {"registry": "done"}, "third to registry alone", 60, 0.1)
            listed = run_script("endpoints", "list", env=no_file).stdout.splitlines()
            assert [line.split("\t")[:2] for line in listed] == [["hospital", "disabled"], ["registry", "enabled"]]
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    engine.dispose()


def _names(engine: Engine) -> list[str]:
    with transaction(engine) as s:
        return list(s.scalars(select(EndpointRow.name).order_by(EndpointRow.name)))
