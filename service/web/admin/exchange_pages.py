"""The console's exchange pages: the dashboard (endpoints' health, workers, alerts), the outbox newest first with
filters, a job diagnosed (the request as sent, every attempt); actions retry, retry every dead job of an endpoint,
disable or enable an endpoint, check capabilities and run sandbox-check."""
from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from flask import abort, redirect, render_template, request, url_for

from service.admin import audit, exchange, jobs, tasks
from service.admin.dashboard import FILTER_NAMES, STATE_NAMES, dashboard, state_of
from service.domain.kinds import KINDS
from service.errors import BadRequest, Conflict, NotFound
from service.exchange.endpoints import Endpoint
from service.exchange.outbox import STATES, JobQuery
from service.params import MAX_KEY, date_bound, parse_integer
from service.security.audit import Entity
from service.web import current
from service.web.admin import bp
from service.web.admin.audit_page import audit_log, console_address, note

PAGE = 50


def _user() -> str:
    return str(request.environ.get("kfhir.admin_user", "?"))


def _endpoint(name: str) -> Endpoint:
    found = current.runtime().endpoints.find(name)
    if found is None:
        abort(404, f"No endpoint named {name!r} (`ketamine-fhir endpoints list` shows them).")
    return found


@bp.get("/exchange")
def exchange_overview() -> str:
    runtime = current.runtime()
    endpoints = runtime.endpoints.all()
    checks = {e.name: exchange.latest(runtime.engine, e.name, exchange.CAPABILITIES) for e in endpoints}
    return render_template("admin/exchange.html", board=dashboard(runtime.engine, endpoints), checks=checks,
                           counts=runtime.outbox.counts(), changed=request.args.get("changed"))


@bp.app_template_global()
def job_state(job: Any) -> tuple[str, str]:
    """(css key, words) of a job's state, as the dashboard names it."""
    key = state_of(job)
    return key, STATE_NAMES[key]


@bp.get("/exchange/endpoints/<name>")
def endpoint_page(name: str, sandbox_error: str | None = None, status: int = 200) -> tuple[str, int]:
    endpoint, runtime = _endpoint(name), current.runtime()
    return render_template(
        "admin/endpoint.html", endpoint=endpoint, counts=runtime.outbox.counts(name),
        capabilities=exchange.latest(runtime.engine, name, exchange.CAPABILITIES),
        sandbox=exchange.latest(runtime.engine, name, exchange.SANDBOX), requeued=request.args.get("requeued"),
        task=tasks.latest(runtime.engine, name), sandbox_error=sandbox_error,
        cleanup=request.form.get("cleanup") == "yes" if request.method == "POST" else True), status


@bp.post("/exchange/endpoints/<name>/capabilities")
def endpoint_capabilities(name: str) -> Any:
    found = exchange.check_capabilities(current.runtime().engine, _endpoint(name), _user())
    note("operation", [Entity(f"capability check of endpoint {name}")], **_outcome(found))
    return redirect(url_for("admin.endpoint_page", name=name) + "#capabilities")


@bp.post("/exchange/endpoints/<name>/sandbox-check")
def endpoint_sandbox_check(name: str) -> Any:
    """Start sandbox-check in the background (service/admin/tasks.py); its steps show on the endpoint's page as
    they pass. Without the confirmation, or while one runs, the same page says why (the box is asked for there)."""
    endpoint = _endpoint(name)
    if request.form.get("confirm") != "yes":
        return endpoint_page(name, "sandbox-check writes synthetic test records (patient SANDBOX-<run id>, new "
                                   "each run) to the server: tick the box that says you mean it, then run it.", 400)
    log, user, server, address = audit_log(), _user(), console_address(), request.remote_addr

    def done(check: exchange.Check) -> None:  # in the task's thread, when the check ends: its real outcome
        audit.record_admin(log, user, "operation", server=server, address=address,
                           what=[Entity(f"sandbox-check of endpoint {name}")], **_outcome(check))

    try:
        tasks.start_sandbox_check(current.runtime().engine, endpoint, user, request.form.get("cleanup") == "yes", done)
    except tasks.Busy as exc:
        return endpoint_page(name, str(exc), 409)
    return redirect(url_for("admin.endpoint_page", name=name) + "#sandbox")


def _outcome(check: exchange.Check) -> dict[str, Any]:
    """A check's real outcome for the audit trail: a failed check is a failure (the server's HTTP status when
    it answered one, else 502: the EHR did not give a usable answer), never `HTTP 200`."""
    if check.passed:
        return {"status": 200, "description": f"passed: {check.summary}"[:500]}
    status = (check.detail or {}).get("status")
    return {"status": status if isinstance(status, int) and status >= 400 else 502,
            "description": f"failed: {check.summary}"[:500]}


@bp.post("/exchange/endpoints/<name>/disable")
def endpoint_disable(name: str) -> Any:
    """Nothing new is queued for it; its queued jobs wait and workers leave them (enable sends them)."""
    return _switch(name, False)


@bp.post("/exchange/endpoints/<name>/enable")
def endpoint_enable(name: str) -> Any:
    return _switch(name, True)


def _switch(name: str, enabled: bool) -> Any:
    _endpoint(name)
    current.runtime().endpoints.set_enabled(name, enabled)
    words = "enabled" if enabled else "disabled"
    note("update", [Entity(f"endpoint {name}")], description=f"endpoint {name} {words}")
    return redirect(url_for("admin.exchange_overview", changed=f"{name} {words}") + "#endpoints-h")


@bp.post("/exchange/endpoints/<name>/retry-dead")
def endpoint_retry_dead(name: str) -> Any:
    _endpoint(name)
    queued = current.runtime().outbox.retry_dead(name)
    note("update", [Entity(f"{queued} dead outbox jobs of endpoint {name}")])
    return redirect(url_for("admin.endpoint_page", name=name, requeued=queued))


@bp.app_template_global()
def outbox_url(**filters: Any) -> str:
    """The outbox page with these filters (url_for cannot take an `endpoint` filter: its own argument)."""
    query = urlencode({k: v for k, v in filters.items() if v not in (None, "")})
    return url_for("admin.outbox") + (f"?{query}" if query else "")


@bp.get("/exchange/outbox")
def outbox() -> tuple[str, int]:
    """Newest first; `before` pages to older jobs, `after` to newer ones, the filters kept in both links."""
    runtime = current.runtime()
    endpoints = runtime.endpoints.all()
    query, errors = _query(request.args, [e.name for e in endpoints])
    found: list[Any] = []
    if not errors:
        newer = query.after_pk > 0  # the page just newer than `after`: read upwards, shown newest first
        found = runtime.outbox.list(replace(query, limit=query.limit + 1, newest_first=not newer))
        more = len(found) > query.limit
        found = found[:query.limit]
        if newer:
            found.reverse()
    filters = {k: v for k, v in request.args.to_dict().items() if k not in ("after", "before")}
    older_url = newer_url = None
    if found:
        has_older = more if not query.after_pk else True
        has_newer = bool(query.after_pk) and more or bool(query.before_pk)
        older_url = outbox_url(**filters, before=found[-1].pk) if has_older else None
        newer_url = outbox_url(**filters, after=found[0].pk) if has_newer else None
    return render_template("admin/outbox.html", jobs=found, older_url=older_url, newer_url=newer_url, errors=errors,
                           args=request.args, states=FILTER_NAMES, kinds=KINDS, endpoints=endpoints), \
        400 if errors else 200


def _query(args: Any, endpoints: list[str]) -> tuple[JobQuery, list[str]]:
    """The filters as a JobQuery, and what was wrong with them (nothing runs when anything is)."""
    errors: list[str] = []
    state, endpoint, kind = args.get("state") or None, args.get("endpoint") or None, args.get("kind") or None
    if state is not None and state not in STATES:
        errors.append(f"State must be one of {', '.join(STATES)}.")
    if kind is not None and kind not in KINDS:
        errors.append(f"Kind must be one of {', '.join(KINDS)}.")
    if endpoint is not None and endpoint not in endpoints:
        errors.append(f"No endpoint named {endpoint!r} is configured.")
    since = None
    try:
        since = date_bound(args, "since", end=False) if args.get("since") else None
    except BadRequest:
        errors.append("The date must be a day like 2026-03-02.")
    after, before = 0, None
    try:
        after = parse_integer("after", args.get("after", "0"), 0, MAX_KEY)
        before = parse_integer("before", args["before"], 1, MAX_KEY) if args.get("before") else None
    except BadRequest:
        errors.append("`after` and `before` must be job numbers.")
    return JobQuery(state=state, endpoint=endpoint, kind=kind, since=since, after_pk=after, before_pk=before,
                    limit=PAGE), errors


def _job(pk: int) -> Any:
    """The job, or the console's 404 (a number beyond any key is no job either, not a database error)."""
    if pk > MAX_KEY:
        abort(404, f"There is no outbox job {pk}.")
    try:
        return current.runtime().outbox.get(pk)
    except NotFound:
        abort(404, f"There is no outbox job {pk}.")


@bp.get("/exchange/jobs/<int:pk>")
def job_page(pk: int) -> str:
    runtime = current.runtime()
    job = _job(pk)
    found = jobs.diagnose(job, runtime.endpoints.find(job.endpoint), runtime.outbox.attempts(pk))
    return render_template("admin/job.html", job=job, d=found, retried=request.args.get("retried") == "1")


@bp.post("/exchange/jobs/<int:pk>/retry")
def job_retry(pk: int) -> Any:
    _job(pk)
    try:
        current.runtime().outbox.retry(pk)
    except NotFound:
        abort(404, f"There is no outbox job {pk}.")
    except Conflict as exc:
        abort(409, exc.detail)
    note("update", [Entity(f"outbox job {pk}")])
    return redirect(url_for("admin.job_page", pk=pk, retried=1))
