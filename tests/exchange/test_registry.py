"""Endpoints in the database (issue 16 item 7): the file is an idempotent import; every runtime enqueues for the
database's endpoints whatever file it read; `endpoints add | list | disable | enable | import`; a record stored
before an endpoint existed is reported as such; no secret is ever stored (both backends)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli.support import kfhir
from exchange.conftest import EHR, endpoints_file
from factories import assessment
from sqlalchemy import select, text

from service.app.runtime import Runtime
from service.config import Settings
from service.exchange.outbox import JobQuery, every_record
from service.store.engine import session as transaction
from service.store.models import EndpointRow, OutboxJobRow

pytestmark = pytest.mark.both_backends


def build(database_url: str, endpoints: Path | None = None) -> Runtime:
    given = {"database_url": database_url} | ({"endpoints_file": str(endpoints)} if endpoints else {})
    return Runtime.build(Settings.load(given, environ={}))


def jobs_of(runtime: Runtime, external_id: str) -> list[str]:
    with transaction(runtime.engine) as s:
        return sorted(s.scalars(select(OutboxJobRow.endpoint).where(
            OutboxJobRow.business_key == f"assessment/clinic-a/{external_id}")))


def test_a_process_without_the_file_queues_for_the_endpoints_another_process_imported(
        database_url: str, tmp_path: Path) -> None:
    """Issue 16's report: the web process lacked KFHIR_ENDPOINTS_FILE, the worker had it, edits went unqueued."""
    worker = build(database_url, endpoints_file(tmp_path, {"name": "ehr", "base_url": EHR}))
    web = build(database_url)
    try:
        web.intake.submit("assessment", assessment(external_id="a-1"))
        assert jobs_of(web, "a-1") == ["ehr"]
        stored = web.store.find("assessment", "clinic-a", "a-1")
        assert stored is not None
        web.intake.replace("assessment", stored.id, stored.version, assessment(external_id="a-1", score=3))
        assert jobs_of(web, "a-1") == ["ehr", "ehr"]  # the edit too
        assert [e.name for e in web.endpoints.all()] == [e.name for e in worker.endpoints.all()] == ["ehr"]
    finally:
        worker.engine.dispose()
        web.engine.dispose()


def test_importing_the_file_again_changes_nothing_and_never_re_enables(database_url: str, tmp_path: Path) -> None:
    path = endpoints_file(tmp_path, {"name": "ehr", "base_url": EHR}, {"name": "lab", "base_url": "http://lab.test"})
    first = build(database_url, path)
    assert first.endpoints.started is not None and first.endpoints.started.added == ["ehr", "lab"]
    first.endpoints.set_enabled("lab", False)
    again = build(database_url, path)
    assert again.endpoints.started is not None
    assert (again.endpoints.started.added, again.endpoints.started.unchanged) == ([], ["ehr", "lab"])
    assert not again.endpoints.find("lab").enabled  # type: ignore[union-attr]

    changed = endpoints_file(tmp_path, {"name": "ehr", "base_url": EHR + "2", "mode": "batch"})
    third = build(database_url, changed)
    assert third.endpoints.started is not None and third.endpoints.started.updated == ["ehr"]
    ehr = third.endpoints.find("ehr")
    assert ehr is not None and (ehr.base_url, ehr.mode, ehr.added_by) == (EHR + "2", "batch", "file endpoints.yaml")
    assert [e.name for e in third.endpoints.all()] == ["ehr", "lab"]  # not named by the file: kept (disable it)
    for runtime in (first, again, third):
        runtime.engine.dispose()


def test_no_secret_is_stored_only_the_names_of_the_variables_holding_them(database_url: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"EHR_TOKEN": "s3cret-token", "EHR_PASSWORD": "s3cret-password"}
    for variable, value in secrets.items():
        monkeypatch.setenv(variable, value)
    path = endpoints_file(tmp_path, {"name": "ehr", "base_url": EHR, "auth": {"type": "bearer", "token_env": "EHR_TOKEN"}})
    runtime = build(database_url, path)
    added = kfhir("endpoints", "add", "lab", "--base-url", "http://lab.test/fhir", "--auth", "basic", "--user",
                  "bridge", "--password-env", "EHR_PASSWORD", database_url=database_url, **secrets)
    assert added.returncode == 0, added.stderr
    with transaction(runtime.engine) as s:
        stored = json.dumps([[str(v) for v in row] for row in s.execute(text("SELECT * FROM endpoints"))])
    assert "s3cret" not in stored and "EHR_TOKEN" in stored and "EHR_PASSWORD" in stored
    listed = kfhir("endpoints", "list", "--format", "json", database_url=database_url)
    assert "s3cret" not in listed.stdout
    assert json.loads(listed.stdout)[1]["auth"] == {"type": "basic", "user": "bridge", "password_env": "EHR_PASSWORD"}
    bearer = runtime.endpoints.find("ehr").credentials()  # type: ignore[union-attr]
    assert getattr(bearer, "token", None) == secrets["EHR_TOKEN"]  # read from the environment when sending
    runtime.engine.dispose()


def test_endpoints_add_list_disable_enable_and_import(database_url: str, tmp_path: Path) -> None:
    added = kfhir("endpoints", "add", "ehr", "--base-url", EHR, "--kinds", "assessment", "--mode", "batch",
                  database_url=database_url)
    assert added.returncode == 0 and "endpoint ehr added (enabled)" in added.stdout, added.stderr
    assert kfhir("endpoints", "add", "ehr", "--base-url", EHR, database_url=database_url).returncode == 2
    refused = kfhir("endpoints", "add", "x y", "--base-url", EHR, database_url=database_url)
    assert refused.returncode == 2 and "a name is" in refused.stderr
    assert kfhir("endpoints", "add", "z", "--base-url", "ftp://z", database_url=database_url).returncode == 2
    listed = kfhir("endpoints", "list", database_url=database_url)
    assert listed.stdout.startswith("ehr\tenabled\thttp://ehr.test/fhir\tbatch\tnone\tassessment\tadded ")

    runtime = build(database_url)
    runtime.intake.submit("assessment", assessment(external_id="before"))
    assert kfhir("endpoints", "disable", "ehr", database_url=database_url).stdout == "endpoint ehr disabled\n"
    runtime.intake.submit("assessment", assessment(external_id="while"))
    assert (jobs_of(runtime, "before"), jobs_of(runtime, "while")) == (["ehr"], [])
    assert kfhir("endpoints", "disable", "nowhere", database_url=database_url).returncode == 2
    assert kfhir("endpoints", "enable", "ehr", database_url=database_url).returncode == 0
    runtime.intake.submit("assessment", assessment(external_id="after"))
    assert jobs_of(runtime, "after") == ["ehr"]

    path = endpoints_file(tmp_path, {"name": "lab", "base_url": "http://lab.test/fhir"})
    imported = kfhir("endpoints", "import", path, database_url=database_url)
    assert imported.returncode == 0 and "1 added, 0 updated, 0 unchanged" in imported.stdout, imported.stderr
    configured = kfhir("endpoints", "import", database_url=database_url, KFHIR_ENDPOINTS_FILE=str(path))
    assert "0 added, 0 updated, 1 unchanged" in configured.stdout
    assert kfhir("endpoints", "import", database_url=database_url).returncode == 2  # no file named, none configured
    runtime.engine.dispose()


def test_backfill_says_a_record_was_stored_before_the_endpoint_was_added_not_never_sent(database_url: str) -> None:
    runtime = build(database_url)
    runtime.intake.submit("assessment", assessment(external_id="early"))
    assert kfhir("endpoints", "add", "late", "--base-url", EHR, database_url=database_url).returncode == 0
    late = runtime.endpoints.find("late")
    assert late is not None
    runtime.endpoints.set_enabled("late", False)
    runtime.intake.submit("assessment", assessment(external_id="paused"))
    late = runtime.endpoints.set_enabled("late", True)
    counts = runtime.outbox.backfill(late, every_record(runtime.store, late.kinds),
                                     lambda r: {"resourceType": "Bundle", "type": "transaction", "entry": []})
    assert counts == {"stored before this endpoint was added": 1, "stored while this endpoint was disabled": 1}
    assert {j.record_id for j in runtime.outbox.list(JobQuery(endpoint="late"))} == {
        r.id for r in every_record(runtime.store, ["assessment"])}
    runtime.engine.dispose()


def test_the_endpoints_table_is_what_the_exchange_api_lists(database_url: str, tmp_path: Path) -> None:
    runtime = build(database_url, endpoints_file(tmp_path, {"name": "ehr", "base_url": EHR}))
    with transaction(runtime.engine) as s:
        (row,) = s.scalars(select(EndpointRow))
    assert (row.name, row.enabled, row.added_by, row.kinds.split()) == (
        "ehr", True, "file endpoints.yaml", ["treatment-plan", "administration", "adverse-event", "assessment"])
    (public,) = [e.public() for e in runtime.endpoints.all()]
    assert public["added_at"].endswith("Z") and public["added_by"] == "file endpoints.yaml"
    runtime.engine.dispose()
