"""`ketamine-fhir serve --production`: gunicorn from our settings, not ready while migrations are pending,
JSON log lines without query strings, and a graceful stop on SIGTERM that lets the request in hand finish."""
from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]
from hardening.db import stored, wait_for_writer
from hardening.production import api_credentials, cli, production
from hardening.test_crash import LONG_TRANSACTION, fhir_headers, post_in_background, transaction
from sqlalchemy import create_engine
from support.databases import fresh_database

from service.config import Settings
from service.store.engine import make_engine
from service.store.migrate import head_revision, upgrade
from service.web import serving
from service.web.balance import BalancedWorker
from service.web.serving import gunicorn_options


def test_gunicorn_takes_workers_bind_and_timeouts_from_settings() -> None:
    settings = Settings.load(environ={"KFHIR_WORKERS": "5", "KFHIR_REQUEST_TIMEOUT": "45", "KFHIR_HOST": "10.0.0.5",
                                      "KFHIR_PORT": "9000", "KFHIR_GRACEFUL_TIMEOUT": "20",
                                      "KFHIR_FORWARDED_ALLOW_IPS": "10.0.0.2"})
    options = gunicorn_options(settings)
    assert options["bind"] == "10.0.0.5:9000" and options["workers"] == 5
    assert options["timeout"] == 45 and options["graceful_timeout"] == 20
    assert options["forwarded_allow_ips"] == "10.0.0.2"
    assert options["preload_app"] is False and options["accesslog"] is None
    assert options["threads"] == 4  # the default: 4 requests at once, in gunicorn's gthread worker spreading clients
    assert options["worker_class"] is BalancedWorker and issubclass(BalancedWorker, ThreadWorker)
    one = gunicorn_options(Settings.load(environ={"KFHIR_THREADS": "1"}))
    assert one["threads"] == 1 and one["worker_class"] == "sync"


def test_a_worker_freezes_its_app_once_built_and_again_once_its_first_requests_are_served(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker builds after the fork is moved out of the collector's reach (gc.freeze) twice: once its app is
    built, and once its first requests have compiled and cached what they use (serving.SETTLE_AFTER_REQUESTS),
    each after a collection, so no garbage is frozen; then never again."""
    steps: list[str] = []
    monkeypatch.setattr(serving.gc, "collect", lambda: steps.append("collect"))
    monkeypatch.setattr(serving.gc, "freeze", lambda: steps.append("freeze"))
    monkeypatch.setattr("service.create_app", lambda settings: steps.append("app") or "the app")
    monkeypatch.setattr(serving, "_settled", False)
    monkeypatch.setattr(serving.sys, "setswitchinterval", lambda interval: None)  # this process's is left alone
    worker = serving.ProductionServer.__new__(serving.ProductionServer)
    worker.settings = Settings.load(environ={})

    assert worker.load() == "the app" and steps == ["app", "collect", "freeze"]
    hook = gunicorn_options(worker.settings)["post_request"]
    for served in (1, serving.SETTLE_AFTER_REQUESTS - 1, serving.SETTLE_AFTER_REQUESTS,
                   serving.SETTLE_AFTER_REQUESTS + 1, 10 * serving.SETTLE_AFTER_REQUESTS):
        hook(SimpleNamespace(nr=served), None, {}, None)
    assert steps == ["app", "collect", "freeze", "collect", "freeze"]


def test_gunicorn_builds_no_access_line_its_access_logger_would_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn.access is at WARNING (kfhir.access logs each request by route): its logger does not build the line
    of each request (its atoms) to drop it, and builds and logs it once the logger is at INFO."""
    from gunicorn.config import Config  # noqa: PLC0415 - gunicorn's own, only here

    config = Config()
    for key, value in gunicorn_options(Settings.load(environ={})).items():
        config.set(key, value)
    assert config.logger_class is serving.QuietAccessLogger
    logger = serving.QuietAccessLogger.__new__(serving.QuietAccessLogger)  # without setup(): no logging config here
    logger.cfg, logger.access_log = config, logging.getLogger("test.gunicorn.access")
    logger.access_log.setLevel("WARNING")
    logger.access_log.propagate = False  # the line is not this test's output
    built: list[str] = []
    monkeypatch.setattr(logger, "atoms", lambda *args: built.append("atoms") or {"h": "127.0.0.1"})
    logger.access(None, None, {}, None)
    assert built == []
    logger.access_log.setLevel("INFO")
    logger.access(None, None, {}, None)
    assert built == ["atoms"]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    pg = request.getfixturevalue("postgres_admin_url") if request.param == "postgresql" else None
    with fresh_database(request.param, pg, tmp_path) as url:
        yield url


def test_not_ready_while_migrations_are_pending_then_ready_after_db_upgrade(empty_database: str,
                                                                           tmp_path: Path) -> None:
    engine = make_engine(empty_database)
    upgrade(engine, "0001")  # an older release's schema
    engine.dispose()
    with production(empty_database, tmp_path, migrate=False, KFHIR_WORKERS="2", KFHIR_LOG_LEVEL="DEBUG") as server:
        pending = requests.get(f"{server.base}/ready", timeout=10)
        assert pending.status_code == 503
        assert pending.json() | {"expected": None} == {"status": "unavailable", "database": "not migrated",
                                                      "revision": "0001", "expected": None}
        assert requests.get(f"{server.base}/health", timeout=10).status_code == 200  # alive, just not ready
        cli(server.env, tmp_path, "db", "upgrade")
        ready = requests.get(f"{server.base}/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["revision"] == head_revision()
        headers = api_credentials(server.env, tmp_path) | {"Content-Type": "application/fhir+json"}
        patient = {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "MRN-SECRET-7"}],
                   "name": [{"family": "Secretname"}], "birthDate": "1961-02-03"}
        created = requests.post(f"{server.base}/fhir/Patient", json=patient, headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        found = requests.get(f"{server.base}/fhir/Patient?identifier=urn:x|MRN-SECRET-7&name=Secretname",
                             headers=headers, timeout=30)
        assert found.json()["total"] == 1
    lines = [line for line in server.log.read_text().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["message"] for e in entries)
    access = [e for e in entries if e["logger"] == "kfhir.access"]
    assert {e["route"] for e in access} >= {"/ready", "/health", "/fhir/<resource_type>"}
    log = server.log.read_text()
    assert "MRN-SECRET-7" not in log and "Secretname" not in log and "1961-02-03" not in log


def test_sigterm_lets_the_transaction_in_hand_finish_then_stops(tmp_path: Path, postgres_admin_url: str) -> None:
    with fresh_database("postgresql", postgres_admin_url, tmp_path) as url:
        monitor = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with production(url, tmp_path, KFHIR_WORKERS="1", KFHIR_GRACEFUL_TIMEOUT="60",
                            KFHIR_MAX_BUNDLE_ENTRIES=LONG_TRANSACTION) as server:
                before = stored(monitor, "Patient", "Observation")
                bundle = json.dumps(transaction(200, "TERM")).encode()
                thread, outcome = post_in_background(f"{server.base}/fhir", bundle, fhir_headers(server))
                wait_for_writer(monitor)
                server.proc.send_signal(signal.SIGTERM)
                started = time.monotonic()
                thread.join(timeout=90)
                assert server.proc.wait(timeout=90) == 0
                stopped_after = time.monotonic() - started
            assert isinstance(outcome[0], requests.Response) and outcome[0].status_code == 200, outcome
            assert stored(monitor, "Patient", "Observation") == before + 400
        finally:  # a failed assertion must not leave its connections to warn in a later test
            monitor.dispose()
    print(f"SIGTERM mid-transaction: the 400-entry Bundle committed whole; gunicorn stopped {stopped_after:.1f} s later")
