"""The one place errors become HTTP responses: OperationOutcome under /fhir, problem+json (RFC 9457) elsewhere."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from service.errors import Forbidden, Issue, RequestError, ServiceUnavailable, TooManyRequests, Unauthorized
from service.fhirjson import error_outcome

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
FHIR_JSON = "application/fhir+json"


def _under_fhir() -> bool:
    return request.path == "/fhir" or request.path.startswith("/fhir/")


def problem(status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None,
            **extra: Any) -> Response:
    if _under_fhir():
        return outcome(status, detail, [Issue(e["field"], e["message"]) for e in errors or []],
                       extra.get("operation_outcome"))
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail,
                            "instance": request.path}
    if errors:
        body["errors"] = errors
    body.update(extra)
    return Response(json.dumps(body), status=status, mimetype=PROBLEM)


def outcome(status: int, detail: str, issues: list[Issue], full: Any = None) -> Response:
    """An OperationOutcome: the overall detail first, then one issue per field with its FHIRPath, or the
    validator's own OperationOutcome (`full`) with every issue's severity."""
    body = error_outcome(status, detail, issues, full if isinstance(full, dict) else None)
    return Response(json.dumps(body), status=status, mimetype=FHIR_JSON)


def render(exc: RequestError) -> Response:
    """A RequestError as its response (also for hooks that replace an answer after the view: web/auth.py)."""
    errors = [{"field": i.field, "message": i.message} | ({"rule": i.rule} if i.rule else {})
              | ({"fhir_path": i.fhir_path} if i.fhir_path else {}) for i in exc.issues]
    response = problem(exc.status, exc.title, exc.detail, errors, **exc.extra)
    if isinstance(exc, Unauthorized | Forbidden) and exc.challenge:
        response.headers["WWW-Authenticate"] = exc.challenge
    if isinstance(exc, TooManyRequests | ServiceUnavailable) and exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def register(app: Flask) -> None:
    app.errorhandler(RequestError)(render)

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = problem(status, exc.name, exc.description or exc.name)
        allowed = getattr(exc, "valid_methods", None)
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(OperationalError)
    def on_database_failure(exc: OperationalError) -> Response:
        # The database, not the request, failed (unreachable, locked past the busy timeout, full, a transaction it
        # could not serialise): the same request may succeed later. Logged with its traceback, as a bug is.
        log.exception("the database failed %s %s", request.method, request.path)
        response = problem(503, "Service Unavailable", "The database could not complete this request; try again. "
                           "A write whose connection was lost as it committed may have been carried out: read it "
                           "back before sending it again.")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception) -> Response:
        # A bug: log it with its traceback, tell the client nothing about the internals.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal server error", "The server failed to handle this request; it has been logged.")
