"""The exchange dashboard against a real (small) EHR server: a worker delivers to an endpoint that accepts, one
that refuses (a dead letter) and one that is down (retrying); the dashboard, the job pages and the audit trail
show each as it is. Both backends."""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from exchange.conftest import endpoints_file
from factories import treatment_plan
from flask import Flask
from flask.testing import FlaskClient
from support.ehr import ehr_server

from service.cli.exchange import _worker
from service.config import Settings
from service.exchange.outbox import JobQuery
from service.exchange.workers import Workers


@pytest.fixture
def ehr() -> Iterator[str]:
    with ehr_server() as base:
        yield base


@pytest.fixture
def settings(database_url: str, tmp_path: Path, ehr: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("LAB_TOKEN", "s3cret")  # the secret the lab endpoint names (never shown by the console)
    path = endpoints_file(tmp_path, {"name": "hospital", "base_url": f"{ehr}/ok"},
                          {"name": "registry", "base_url": f"{ehr}/refusing"},
                          {"name": "lab", "base_url": f"{ehr}/down", "auth": {"type": "bearer", "token_env": "LAB_TOKEN"}})
    return Settings.load({"database_url": database_url, "endpoints_file": str(path)}, environ={})


def _text(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.get_data(as_text=True)


def _deliver(app: Flask) -> dict[str, int]:
    """A plan stored (a job per endpoint), then delivered once by a worker built as `ketamine-fhir worker` builds
    it (heartbeat, audit); the job of each endpoint."""
    runtime = app.extensions["kfhir"]
    runtime.intake.submit("treatment-plan", treatment_plan())
    worker = _worker(runtime, runtime.endpoints.all())
    worker.alive(force=True)
    tally = worker.drain()  # as `push` does: it says goodbye at the end
    assert (tally.done, tally.dead, tally.retry) == (1, 1, 1)
    worker.alive(force=True)  # as `worker` does between polls: alive again
    return {j.endpoint: j.pk for j in runtime.outbox.list(JobQuery())}


def _row(page: str, table: str, name: str) -> str:
    part = page[page.index(f'id="{table}"'):]
    start = part.index(f'>{name}</a>')
    return part[start:part.index("</tr>", start)]


@pytest.mark.both_backends  # the dashboard's aggregate queries and the audit search, on PostgreSQL too
def test_a_failing_endpoint_and_a_dead_letter_show_on_the_dashboard_and_in_the_audit_trail(
        admin: FlaskClient, app: Flask) -> None:
    jobs = _deliver(app)

    overview = _text(admin, "/admin/")
    assert overview.index('id="exchange-health-h"') < overview.index('id="records-h"')  # the overview's first panel
    for page in (_text(admin, "/admin/exchange"), overview):
        numbers = {name: re.findall(r'<td class="num">(?:<a [^>]*>)?(\d+)', _row(page, "health", name))
                   for name in ("hospital", "registry", "lab")}
        assert numbers == {"hospital": ["1", "0", "0", "0"], "registry": ["0", "0", "0", "1"],
                           "lab": ["0", "0", "1", "0"]}  # delivered, waiting, retrying, dead
        assert "needs a person" in _row(page, "health", "registry")
        assert "failing — retrying after errors" in _row(page, "health", "lab")
        assert "HTTP 503" in _row(page, "health", "lab") and "HTTP 422" in _row(page, "health", "registry")
        assert "registry: 1 dead job — it needs a person" in page
        assert "lab: failing — 1 job retrying after errors" in page
        assert "1 outbox worker alive" in page and "(1 delivered, 2 failed)" in page

    dead = _text(admin, f"/admin/exchange/jobs/{jobs['registry']}")
    assert "Outbox job" in dead and "dead — needs a person" in dead
    assert re.search(r"POST http://127\.0\.0\.1:\d+/refusing: 422", dead)  # the URL, not `POST : 422`
    assert '<a href="#sent-Bundle.entry[2].resource.status"><code>Bundle.entry[2].resource.status</code></a>' in dead
    assert 'id="sent-Bundle.entry[2].resource.status"' in dead  # the line the link goes to
    retrying = _text(admin, f"/admin/exchange/jobs/{jobs['lab']}")
    assert "retrying after an error" in retrying and "s3cret" not in retrying
    assert "Authorization: Bearer … (token from the environment; not shown)" in retrying
    delivered = _text(admin, f"/admin/exchange/jobs/{jobs['hospital']}")
    assert "Delivered" in delivered and "(HTTP 200)" in delivered and 'id="written-table"' in delivered
    assert 'id="last-error"' not in delivered

    trail = _text(admin, "/admin/audit?agent=worker:" + _worker_name(app))
    rows = re.findall(r"<tr class=\"outcome-[a-z]+\"><td>.*?</tr>", trail, re.S)
    assert len(rows) == 3
    assert any("outbox job" in r and "dead letter" in r and "minor failure (failed — dead letter" in r for r in rows)
    assert any("serious failure (failed, to be retried" in r for r in rows)
    assert any("success (delivered)" in r for r in rows)


def _worker_name(app: Flask) -> str:
    (seen,) = Workers(app.extensions["kfhir"].engine).seen()
    return seen.name


def test_the_dashboard_warns_when_jobs_wait_and_no_worker_is_alive(admin: FlaskClient, app: Flask) -> None:
    runtime = app.extensions["kfhir"]
    runtime.intake.submit("treatment-plan", treatment_plan())
    worker = _worker(runtime, runtime.endpoints.all())
    stop = threading.Event()
    stop.set()
    worker.run(stop)  # registers, then stops at once: seen, not alive

    page = _text(admin, "/admin/exchange")

    assert "3 jobs waiting and no outbox worker is running" in page
    assert "No outbox worker is running" in page and f"{worker.name} — stopped" in page


@pytest.mark.both_backends
def test_the_outbox_lists_newest_first_and_pages_both_ways_keeping_its_filters(
        admin: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.web.admin import exchange_pages

    runtime = app.extensions["kfhir"]
    for n in range(3):
        runtime.intake.submit("treatment-plan", treatment_plan(external_id=f"plan-{n}"))
    monkeypatch.setattr(exchange_pages, "PAGE", 2)
    pks = sorted((j.pk for j in runtime.outbox.list(JobQuery(endpoint="lab"))), reverse=True)

    def listed(page: str) -> list[int]:
        return [int(n) for n in re.findall(r'<a href="/admin/exchange/jobs/(\d+)">', page)]

    first = _text(admin, "/admin/exchange/outbox?endpoint=lab&kind=treatment-plan")
    assert listed(first) == pks[:2] and 'rel="prev"' not in first
    older = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert older and "endpoint=lab" in older.group(1) and "kind=treatment-plan" in older.group(1)
    second = _text(admin, older.group(1).replace("&amp;", "&"))
    assert listed(second) == pks[2:] and 'rel="next"' not in second
    newer = re.search(r'<a href="([^"]+)" rel="prev">', second)
    assert newer and "endpoint=lab" in newer.group(1)
    assert listed(_text(admin, newer.group(1).replace("&amp;", "&"))) == pks[:2]
    assert "waiting to be sent" in first and "in_flight" not in first.split('id="jobs"')[1]
