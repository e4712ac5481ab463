"""PHI-safe logs: one JSON object per line, and one access line per request naming its route, never its URL.

Search parameters carry medical record numbers and names (`patient_identifier=…|MRN-1001`,
`Patient?identifier=…`), bodies carry everything, and database errors quote the values they
failed on. So the access line names the route template (`/fhir/<resource_type>/<resource_id>`),
any query string that reaches a message is cut off, and exceptions are logged by type and stack,
without their message.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any

from flask import Flask, Response, g, has_request_context, request

ACCESS = logging.getLogger("kfhir.access")
#: what we accept as a caller's X-Request-ID: short and plain, so it cannot forge log lines
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: `/fhir/Patient?identifier=x|y` → `/fhir/Patient?…`, in request lines and URLs alike
_QUERY = re.compile(r"(/[^\s\"'?]*)\?[^\s\"']*")
#: the request fields every line made inside a request carries
#: `<any("a", "b"):plural>` → `<plural>`: converters say nothing an operator needs
_CONVERTER = re.compile(r"<[^<>]*?(\w+)>")
FIELDS = ("request_id", "client_id", "method", "route", "status", "duration_ms")


#: terminal colours (werkzeug's start-up lines): noise in a JSON field
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def scrub(text: str) -> str:
    return _QUERY.sub(r"\1?…", _ANSI.sub("", text))


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", request fields…, "exception"}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": scrub(record.getMessage())}
        entry.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = _exception(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _exception(exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | Any) -> dict[str, Any]:
    """The exception's type and stack: its message may quote the request (SQL parameters, values)."""
    kind, exc, tb = exc_info
    causes: list[str] = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(causes) < 5:
        causes.append(type(cause).__qualname__)
        cause = cause.__cause__ or cause.__context__
    frames = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(tb)]
    return {"type": kind.__qualname__, "caused_by": causes, "stack": frames}


class RequestFields(logging.Filter):
    """Gives every line logged while handling a request that request's id and client."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and "request_id" in g and not hasattr(record, "request_id"):
            record.request_id = g.request_id
            record.client_id = client_id()
        return True


class JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """JSON lines to whatever sys.stderr is when the line is written (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestFields())

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass  # always sys.stderr


class DropAccessLines(logging.Filter):
    """Werkzeug's own access line shows the raw path; ours (kfhir.access) replaces it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).endswith('"%s" %s %s')


def configure(level: str) -> None:
    """JSON lines on stderr for every logger, at `level`; calling it again only changes the level."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not any(isinstance(h, JsonHandler) for h in root.handlers):
        root.addHandler(JsonHandler())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up chatter is not news
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)  # at DEBUG it would log result rows
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, DropAccessLines) for f in werkzeug.filters):
        werkzeug.addFilter(DropAccessLines())


def client_id() -> str | None:
    """The authenticated API client, once authentication has put it on `g`; None before or without."""
    value = g.get("client_id")
    return str(value) if value is not None else None


def init_app(app: Flask) -> None:
    """Register first, so the request id exists before any other hook can refuse the request."""
    app.before_request(_start)
    app.after_request(_finish)


def _start() -> None:
    given = request.environ.get("HTTP_X_REQUEST_ID", "")  # request.headers' value; its miss raised a KeyError
    g.request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish(response: Response) -> Response:
    if "request_id" not in g:  # a hook before ours answered
        _start()
    response.headers["X-Request-ID"] = g.request_id
    if not ACCESS.isEnabledFor(logging.INFO):  # KFHIR_LOG_LEVEL=WARNING (as served in the bench): no line to make
        return response
    route = _CONVERTER.sub(r"<\1>", request.url_rule.rule) if request.url_rule is not None else None
    duration = round((time.perf_counter() - g.request_started) * 1000, 1)
    fields = {"request_id": g.request_id, "client_id": client_id(), "method": request.method, "route": route,
              "status": response.status_code, "duration_ms": duration}
    ACCESS.info("%s %s %s %.1f ms", request.method, route or "(no route)", response.status_code, duration,
                extra=fields)
    return response
