"""`ketamine-fhir worker | push | pull | sandbox-check`: records to and from EHR FHIR servers."""
from __future__ import annotations

import json
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from service.admin.audit import record_delivery, record_pull
from service.cli import context
from service.cli.context import Runtime
from service.exchange.endpoints import Endpoint, EndpointError
from service.exchange.outbox import LEASE_S, Outbox
from service.exchange.worker import Tally, Worker
from service.exchange.workers import Workers
from service.security.audit import AuditLog
from service.security.keys import ApiClients


def _endpoint(runtime: Runtime, name: str) -> Endpoint:
    every = runtime.endpoints.all()
    found = next((e for e in every if e.name == name), None)
    if found is None:
        known = ", ".join(e.name for e in every) or "none: `ketamine-fhir endpoints add` or KFHIR_ENDPOINTS_FILE"
        raise click.UsageError(f"no endpoint named {name!r} (known: {known})")
    return found


def _worker(runtime: Runtime, endpoints: list[Endpoint], lease_s: float = LEASE_S,
            refresh: Callable[[], list[Endpoint]] | None = None) -> Worker:
    """A worker that records its heartbeat (the console shows it) and audits every delivery."""
    try:
        made = Worker(Outbox(runtime.engine, lease_s), endpoints, workers=Workers(runtime.engine), refresh=refresh)
    except (EndpointError, OSError) as exc:  # a secret's variable unset, a key file unreadable
        raise click.UsageError(str(exc)) from None
    log = _audit_log(runtime)
    made.observer = lambda job, state, failure: record_delivery(log, made.name, job, state, failure,
                                                                made.endpoints[job.endpoint].base_url)
    return made


def _audit_log(runtime: Runtime) -> AuditLog:
    return AuditLog(runtime.engine, ApiClients(runtime.engine).pepper)


@click.command("worker")
@click.option("--endpoint", "names", multiple=True,
              help="Only this endpoint (repeatable; default: every enabled one, as the database has them).")
@click.option("--poll", default=1.0, show_default=True, help="Seconds between looks at an empty queue.")
@click.option("--lease", default=LEASE_S, show_default=True, type=click.FloatRange(min=1),
              help="Seconds a claimed job stays this worker's without a heartbeat (then another may take it).")
def worker(names: tuple[str, ...], poll: float, lease: float) -> None:
    """Deliver outbox jobs to the EHR endpoints until stopped (SIGTERM or Ctrl-C finish the job in hand).

    It follows the endpoints in the database while it runs (one added, enabled or disabled). On PostgreSQL any
    number of workers, on any machines, share the queue; on SQLite run one.
    """
    runtime = context.runtime()
    for name in names:
        if not _endpoint(runtime, name).enabled:
            raise click.UsageError(f"endpoint {name!r} is disabled (`ketamine-fhir endpoints enable {name}`)")

    def following() -> list[Endpoint]:
        return [e for e in runtime.endpoints.enabled() if not names or e.name in names]

    endpoints = following()
    if not endpoints:
        raise click.UsageError("no enabled endpoint: `ketamine-fhir endpoints add` one (or KFHIR_ENDPOINTS_FILE)")
    delivering = _worker(runtime, endpoints, lease, following)
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
    click.echo(f"worker {delivering.name} delivering to {', '.join(e.name for e in endpoints)}", err=True)
    try:
        tally = delivering.run(stop, poll)
    finally:  # run in-process (a test, a script), the caller's handlers come back
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    click.echo(f"worker stopped: {_summary(tally)}", err=True)


@click.command("push")
@click.option("--endpoint", "name", required=True, help="The endpoint whose queued jobs to deliver.")
@click.option("--all", "backfill", is_flag=True,
              help="First queue every stored record whose current version was never queued for the endpoint "
                   "(stored before it was added, or while it was disabled).")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human")
def push(name: str, backfill: bool, fmt: str) -> None:
    """Deliver the endpoint's due jobs once, then stop; exit 1 when any job failed (dead or retrying)."""
    from service.exchange.outbox import every_record
    from service.mapping import map_record

    runtime = context.runtime()
    endpoint = _endpoint(runtime, name)
    delivering = _worker(runtime, [endpoint])
    def bundle_of(record: Any) -> Any:
        return map_record(record.kind, record.content, findings=record.warnings).bundle

    queued = runtime.outbox.backfill(endpoint, every_record(runtime.store, endpoint.kinds),
                                     bundle_of) if backfill else {}
    started = time.perf_counter()
    if sys.stdout.isatty() and fmt == "human":
        with click.progressbar(length=runtime.outbox.counts(name)["queued"], label=f"pushing to {name}") as bar:
            tally = delivering.drain(lambda job, state: bar.update(1))
    else:
        tally = delivering.drain()
    seconds = time.perf_counter() - started
    _report_push(fmt, name, queued, tally, seconds, runtime.outbox.counts(name))
    sys.exit(1 if tally.dead or tally.retry else 0)


def _report_push(fmt: str, name: str, queued: dict[str, int], tally: Tally, seconds: float,
                 counts: dict[str, int]) -> None:
    median_ms = statistics.median(tally.seconds) * 1000 if tally.seconds else 0.0
    if fmt == "json":
        click.echo(json.dumps({"endpoint": name, "backfilled": sum(queued.values()), "backfilled_because": queued,
                               "done": tally.done, "retry": tally.retry,
                               "dead": tally.dead, "lost": tally.lost, "seconds": round(seconds, 3),
                               "median_ms_per_job": round(median_ms, 1), "states": counts}))
        return
    for reason, n in queued.items():
        click.echo(f"{n} record{'' if n == 1 else 's'} queued for {name} ({reason})")
    click.echo(f"{name}: {_summary(tally)} in {seconds:.1f} s (median {median_ms:.0f} ms per record); "
               f"outbox now {counts['queued']} queued, {counts['dead']} dead")


def _summary(tally: Tally) -> str:
    return f"{tally.done} delivered, {tally.retry} to retry later, {tally.dead} dead letters"


@click.command("pull")
@click.option("--endpoint", "name", required=True, help="The EHR endpoint to read from.")
@click.option("--patient", "identifier", required=True, help="The patient's identifier: SYSTEM|VALUE (or VALUE).")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human")
def pull(name: str, identifier: str, fmt: str) -> None:
    """Read a patient's ketamine resources from the EHR into this service (validated, mapped to records).

    Pulling again changes nothing unless the EHR's resources changed. Exit 1 when no patient matched.
    """
    from service.app.pull import parse_identifier
    from service.app.pull import pull as run_pull
    from service.errors import RequestError
    from service.exchange.client import FhirClient, FhirError

    runtime = context.runtime()
    endpoint = _endpoint(runtime, name)
    try:
        parse_identifier(identifier)
        client = FhirClient(endpoint.base_url, endpoint.credentials(), endpoint.timeout_s)
    except (ValueError, OSError) as exc:
        raise click.UsageError(str(exc)) from None
    system, bar, value = identifier.strip().rpartition("|")
    patient = (system, value) if bar and system else None
    audit = _audit_log(runtime)
    try:
        report = run_pull(client, runtime, identifier)
    except FhirError as exc:
        record_pull(audit, name, endpoint.base_url, patient, exc.status or 503, f"failed: {exc.message}")
        raise click.ClickException(f"{name}: {exc.message}") from None
    except RequestError as exc:
        record_pull(audit, name, endpoint.base_url, patient, 422, f"refused here: {exc.detail}")
        raise click.ClickException(f"the EHR's resources were refused here: {exc.detail}") from None
    record_pull(audit, name, endpoint.base_url, patient, 200 if report.patients else 404,
                f"{report.patients} patient(s), {report.fetched} fetched, {report.written} written")
    if fmt == "json":
        click.echo(json.dumps(vars(report)))
    else:
        click.echo(f"{name}: {report.patients} patient(s), {report.fetched} resources fetched, {report.written} "
                   f"written, {report.unchanged} unchanged; {len(report.records)} clinic records")
    sys.exit(0 if report.patients else 1)


@click.command("sandbox-check")
@click.option("--base-url", required=True, help="The FHIR server's base URL (…/fhir, …/baseR4).")
@click.option("--bearer-token", default=None, help="A bearer token, for sandboxes that want one.")
@click.option("--mode", type=click.Choice(["transaction", "batch", "conditional"]), default="transaction",
              show_default=True, help="How records are sent (conditional: one request per resource).")
@click.option("--cleanup", is_flag=True, help="Delete what was written at the end (also after a failure).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as FILE.html or FILE.json.")
def sandbox_check(base_url: str, bearer_token: str | None, mode: str, cleanup: bool,
                  report_path: Path | None) -> None:
    """Run a scripted exchange with a FHIR server and print each step; exit 0 only if none failed.

    Pushes synthetic records new to every run (patient MRN SANDBOX-<run id>): a treatment plan, a dosing
    session with vital signs and scores, and an adverse event; pushes them again (no duplicates); reads
    everything back; searches with paging. What the server's CapabilityStatement does not offer is skipped.
    """
    from service.exchange.auth import Bearer
    from service.exchange.client import FhirClient
    from service.exchange.sandbox import run

    client = FhirClient(base_url, Bearer(bearer_token) if bearer_token else None)
    report = run(client, mode, cleanup, progress=_progress if sys.stderr.isatty() else None)
    click.echo(report.table())
    if report_path is not None:
        text = report.as_html() if report_path.suffix.lower() in (".html", ".htm") else report.as_json()
        report_path.write_text(text, encoding="utf-8")
        click.echo(f"report: {report_path}", err=True)
    sys.exit(0 if report.passed else 1)


def _progress(report: object, step: Any) -> None:
    if step.status == "running":
        click.echo(f"… {step.name}", err=True)
