"""The admin console at /admin: server-rendered pages behind sign-in (blueprint `admin`).

    session.py   the signed session cookie: key from the database or KFHIR_SECRET_KEY, /admin only
    auth.py      sign-in, sign-out, the sign-in guard and CSRF tokens on every form
    views.py     overview, mappings, profiles, try it
    patients.py  patient search and a patient's course (charts from charts.py)
    mapping_history.py  every known version of a mapping and a rule diff between two
    exchange_pages.py   the exchange dashboard, endpoints and their checks, the outbox, a job; retry, sandbox-check
    records_pages.py    each kind's records with a search; one record with its resources, jobs and audit trail
    formats.py          times in the local zone with their offset, ages, counted nouns
    audit_page.py       the audit trail with filters; the console's own accesses recorded in it
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, Flask
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.security.signing import SigningKey

log = logging.getLogger(__name__)
bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates",
               static_folder="static", static_url_path="/static")

#: A signed-in session ends after this long, whatever the activity.
SESSION_LIFETIME = timedelta(hours=8)


def init_app(app: Flask) -> None:
    """Register the blueprint and the session it needs (only /admin gets a session cookie)."""
    from service.web.admin import (  # noqa: F401
        audit_page,
        auth,
        exchange_pages,
        formats,
        mapping_history,
        patients,
        records_pages,
        views,
    )
    from service.web.admin.session import AdminSessionInterface

    runtime = app.extensions["kfhir"]
    settings = runtime.settings
    app.session_interface = AdminSessionInterface(SigningKey(runtime.engine, settings.secret_key or None))
    app.config.update(
        SESSION_COOKIE_NAME="kfhir_admin",
        SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.register_blueprint(bp)
    _record_mapping_versions(runtime.engine)


def _record_mapping_versions(engine: Engine) -> None:
    """The mapping history starts at a service's first start (service/admin/history.py)."""
    from service.admin.history import record_current

    try:
        record_current(engine)
    except SQLAlchemyError as exc:  # not migrated yet: the history page records them once it is
        log.info("mapping versions not recorded at start-up: %s", type(exc).__name__)
