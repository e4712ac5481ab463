"""The console's session: Flask's signed cookie, with its key resolved on first use and only under /admin."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Request, has_request_context, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.exc import SQLAlchemyError

from service.security.signing import SigningKey

log = logging.getLogger(__name__)


def under_admin(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


class AdminSessionInterface(SecureCookieSessionInterface):
    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def open_session(self, app: Flask, request: Request) -> Any:
        if not under_admin(request.path):  # the APIs never read or set a cookie
            return None
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            try:
                app.secret_key = self.key.get()
            except SQLAlchemyError as exc:  # not migrated yet: the console answers 503 (auth.py)
                log.warning("admin session key unavailable: %s", type(exc).__name__)
                return None
        return super().get_signing_serializer(app)

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure when configured, and always when this request came over TLS."""
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (has_request_context() and request.is_secure)

    def save_session(self, app: Flask, session: SessionMixin, response: Any) -> None:
        if under_admin(request.path):
            super().save_session(app, session, response)
