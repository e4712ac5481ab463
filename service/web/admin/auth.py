"""Sign-in and sign-out, the guard every console page passes, and CSRF tokens on every form.

CSRF is our own few lines rather than Flask-WTF: the console has a handful of forms, no WTForms, and the
session is already a signed cookie; a random token per session, compared in constant time, is all it takes.
"""
from __future__ import annotations

import hmac
import logging
import secrets
import time
from typing import Any

from flask import Response, abort, redirect, render_template, request, session, url_for
from flask.sessions import NullSession, SessionMixin
from werkzeug.exceptions import HTTPException

from service.admin.accounts import Accounts
from service.store.records import utcnow
from service.web import current
from service.web.admin import SESSION_LIFETIME, audit_page, bp

log = logging.getLogger(__name__)

#: Pages anyone may open: the sign-in form and the stylesheet it uses.
PUBLIC = {"admin.sign_in", "admin.static"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def accounts() -> Accounts:
    runtime = current.runtime()
    return Accounts(runtime.engine, runtime.settings.workers)


def _available(s: SessionMixin) -> bool:
    return not isinstance(s, NullSession)  # no signing key: the database cannot give one yet


def csrf_token() -> str:
    """This session's token (made on first use); every form carries it in a hidden field."""
    if not _available(session):
        return ""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    token: str = session["csrf"]
    return token


@bp.app_template_global()
def admin_csrf_token() -> str:
    return csrf_token()


def signed_in_user() -> str | None:
    """The signed-in username, if the cookie is current: not expired, and its account's sessions not ended."""
    user, version, at = session.get("user"), session.get("v"), session.get("at")
    if not isinstance(user, str) or not isinstance(at, int | float):
        return None
    if time.time() - at > SESSION_LIFETIME.total_seconds():
        return None
    return user if accounts().session_version(user) == version else None


@bp.before_request
def guard() -> Any:
    if request.endpoint == "admin.static":
        return None
    if not _available(session):
        abort(503, "The admin console is unavailable: the database is not migrated (run `ketamine-fhir db upgrade`).")
    if request.method in UNSAFE:
        sent = request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(sent.encode(), str(expected).encode()):
            abort(403, "The form was missing its security token or it was out of date; reload the page and "
                       "send it again.")
    if request.endpoint in PUBLIC:
        return None
    user = signed_in_user()
    if user is None:
        session.pop("user", None)
        return redirect(url_for("admin.sign_in", next=request.full_path if request.args else request.path))
    request.environ["kfhir.admin_user"] = user
    return None


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never another host (no open redirect)."""
    if target and target.startswith("/admin") and not target.startswith("//") and "\\" not in target \
            and target.isprintable():  # CR and LF would split the Location header (once a 500)
        return target
    return url_for("admin.overview")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        csrf_token()
        return render_template("admin/sign_in.html", next=next_url, error=None, username="")
    username = request.form.get("username", "")
    now = utcnow()
    result = accounts().sign_in(username, request.form.get("password", ""), now)
    audit_page.authenticated(username, result.ok, result.locked_until, now)
    if not result.ok:
        if result.locked_until is not None:
            error = (f"Too many failed attempts: sign-in for this username is locked until "
                     f"{result.locked_until:%H:%M} UTC.")
        else:
            error = "Wrong username or password."
        return render_template("admin/sign_in.html", next=next_url, error=error, username=username), 401
    session.clear()  # a fresh session (and CSRF token) for the signed-in user: no fixation
    session.update(user=result.username, v=result.session_version, at=int(time.time()),
                   csrf=secrets.token_urlsafe(32))
    session.permanent = True
    return redirect(next_url)


@bp.post("/sign-out")
def sign_out() -> Any:
    user = request.environ.get("kfhir.admin_user")
    if user:
        accounts().sign_out(user)  # this cookie and any copy of it stop working
        audit_page.signed_out(user)
    session.clear()
    return redirect(url_for("admin.sign_in"))


@bp.app_template_global()
def admin_user() -> str | None:
    user: str | None = request.environ.get("kfhir.admin_user")
    return user


#: The console loads nothing from elsewhere, runs no script and is never framed (no clickjacking);
#: its pages show patient data, so browsers and proxies keep no copy.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@bp.after_request
def security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        if name == "Cache-Control" and request.endpoint == "admin.static":
            continue  # the stylesheet may be cached
        response.headers.setdefault(name, value)
    return response


@bp.errorhandler(HTTPException)
def on_http_error(exc: HTTPException) -> Any:
    status = exc.code or 500
    return render_template("admin/error.html", status=status, title=exc.name, detail=exc.description), status


@bp.errorhandler(Exception)
def on_unexpected(exc: Exception) -> Any:
    """A bug in a console page: logged with its traceback, answered with the console's own page (no internals)."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    return render_template("admin/error.html", status=500, title="Internal Server Error",
                           detail="The console failed to show this page; the error has been logged."), 500


@bp.route("/<path:unknown>", methods=["GET", "POST"])
def not_found(unknown: str) -> Any:
    """Any other /admin address: the console's 404 page (signed in), not the API's JSON."""
    abort(404, "There is no such page in the console.")
