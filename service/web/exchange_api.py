"""Exchange API: the EHR endpoints this service sends records to (secrets never shown), and the outbox's
jobs with their attempts, retried by hand when a person fixed what made them dead letters."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request

from service.config import MAX_PAGE_SIZE
from service.domain.kinds import NAMES as KINDS
from service.errors import BadRequest, Issue, NotFound
from service.exchange.outbox import STATES, JobQuery
from service.params import MAX_KEY, cursor, date_bound, integer, uncursor
from service.web import current

bp = Blueprint("exchange_api", __name__, url_prefix="/api/v1/exchange")


@bp.get("/endpoints")
def endpoints() -> Response:
    return jsonify(endpoints=[e.public() for e in current.runtime().endpoints.all()])


@bp.get("/jobs")
def jobs() -> Response:
    query = _job_query(request.args)
    # One more than asked for tells whether another page exists, so `next` never leads to an empty page.
    page = current.runtime().outbox.list(JobQuery(**{**vars(query), "limit": query.limit + 1}))
    following = None
    if len(page) > query.limit:
        page = page[: query.limit]
        # not url_for: the `endpoint` filter would collide with its own argument of that name
        following = f"{request.path}?{urlencode(request.args.to_dict() | {'cursor': cursor(page[-1].pk)})}"
    return jsonify(items=[j.public() for j in page], count=len(page), next=following)


@bp.get(f"/jobs/<int(max={MAX_KEY}):job_id>")
def job(job_id: int) -> Response:
    outbox = current.runtime().outbox
    return jsonify(outbox.get(job_id).public() | {"history": outbox.attempts(job_id)})


@bp.post(f"/jobs/<int(max={MAX_KEY}):job_id>/retry")
def retry(job_id: int) -> Response:
    return jsonify(current.runtime().outbox.retry(job_id).public())


@bp.post("/endpoints/<name>/retry-dead")
def retry_dead(name: str) -> Response:
    runtime = current.runtime()
    if runtime.endpoints.find(name) is None:
        raise NotFound(f"No endpoint named {name!r}.")
    return jsonify(endpoint=name, queued=runtime.outbox.retry_dead(name))


JOB_PARAMS = {"state", "endpoint", "kind", "since", "limit", "cursor"}


def _job_query(args: Any) -> JobQuery:
    unknown = sorted(set(args) - JOB_PARAMS)
    if unknown:
        raise BadRequest("Unknown query parameter.", [Issue(n, f"not one of {sorted(JOB_PARAMS)}") for n in unknown])
    for name, allowed in (("state", STATES), ("kind", KINDS)):
        if name in args and args[name] not in allowed:
            raise BadRequest(f"{name} must be one of {', '.join(allowed)}.", [Issue(name, f"got {args[name]!r}")])
    limit = integer(args, "limit", current.runtime().settings.page_size, 1, MAX_PAGE_SIZE)
    after = uncursor("cursor", args["cursor"]) if "cursor" in args else 0
    return JobQuery(args.get("state"), args.get("endpoint"), args.get("kind"),
                    date_bound(args, "since", end=False), after, limit)
