"""Exchange for the console: each endpoint's last capability check and sandbox-check, run on request and
kept in the database (so every process and every admin sees the same last result); the outbox itself is
service/exchange/outbox.py, used as it is."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from service.exchange import sandbox
from service.exchange.client import FhirClient, FhirError
from service.exchange.endpoints import Endpoint, EndpointError
from service.store.engine import session
from service.store.models import EndpointCheckRow
from service.store.records import utcnow

CAPABILITIES, SANDBOX = "capabilities", "sandbox-check"


@dataclass(frozen=True)
class Check:
    endpoint: str
    check: str
    checked_at: datetime
    passed: bool
    seconds: float
    summary: str
    detail: dict[str, Any] | None
    run_by: str

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list((self.detail or {}).get("steps") or [])

    @property
    def outcome(self) -> dict[str, Any] | None:
        found = (self.detail or {}).get("outcome")
        return found if isinstance(found, dict) else None


def client_for(endpoint: Endpoint) -> FhirClient:
    """A client with the endpoint's own credentials (from the environment variables it names)."""
    return FhirClient(endpoint.base_url, endpoint.credentials(), timeout=endpoint.timeout_s)


def check_capabilities(engine: Engine, endpoint: Endpoint, user: str) -> Check:
    """GET [base]/metadata now: FHIR version, transaction and batch support; the result is kept."""
    started = time.perf_counter()
    try:
        found = client_for(endpoint).capabilities()
        types = len(found.types)
        summary = (f"FHIR {found.fhir_version}; transaction {'yes' if found.transaction else 'no'}, "
                   f"batch {'yes' if found.batch else 'no'}; {types} resource type{'s' if types != 1 else ''}")
        return _keep(engine, endpoint.name, CAPABILITIES, True, started, summary, None, user)
    except FhirError as exc:
        detail = {"status": exc.status, "outcome": exc.outcome} if exc.outcome or exc.status else None
        return _keep(engine, endpoint.name, CAPABILITIES, False, started, exc.message, detail, user)
    except EndpointError as exc:  # a secret the endpoint names is not in the environment
        return _keep(engine, endpoint.name, CAPABILITIES, False, started, str(exc), None, user)


def run_sandbox_check(engine: Engine, endpoint: Endpoint, user: str, cleanup: bool,
                      progress: sandbox.Progress | None = None) -> Check:
    """sandbox-check (service/exchange/sandbox.py) against the endpoint in its mode; the report is kept.
    `progress` hears of every step as it starts and ends (the console's background task shows them)."""
    started = time.perf_counter()
    try:
        report = sandbox.run(client_for(endpoint), endpoint.mode, cleanup, progress=progress)
    except EndpointError as exc:
        return _keep(engine, endpoint.name, SANDBOX, False, started, str(exc), None, user)
    failed = sum(s.status == "fail" for s in report.steps)
    skipped = sum(s.status == "skip" for s in report.steps)
    summary = "every step passed" if report.passed else f"{failed} failed, {skipped} skipped"
    steps = [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 3), "message": s.message}
             for s in report.steps]
    return _keep(engine, endpoint.name, SANDBOX, report.passed, started, summary,
                 {"steps": steps, "mode": endpoint.mode, "cleanup": cleanup}, user)


def _keep(engine: Engine, endpoint: str, check: str, passed: bool, started: float, summary: str,
          detail: dict[str, Any] | None, user: str) -> Check:
    row = EndpointCheckRow(endpoint=endpoint, kind=check, checked_at=utcnow(), passed=passed,
                           seconds=round(time.perf_counter() - started, 3), summary=summary, detail=detail,
                           run_by=user)
    with session(engine, write=True) as s:
        s.add(row)
    return _of(row)


def _of(row: EndpointCheckRow) -> Check:
    return Check(row.endpoint, row.kind, row.checked_at, row.passed, row.seconds, row.summary, row.detail,
                 row.run_by)


def latest(engine: Engine, endpoint: str, check: str) -> Check | None:
    with session(engine) as s:
        row = s.scalars(select(EndpointCheckRow).where(EndpointCheckRow.endpoint == endpoint,
                                                       EndpointCheckRow.kind == check)
                        .order_by(EndpointCheckRow.pk.desc()).limit(1)).one_or_none()
        return _of(row) if row else None

