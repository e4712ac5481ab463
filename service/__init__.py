"""Ketamine FHIR Bridge: the Flask application factory."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from service.config import Settings


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings (defaults → KFHIR_* environment → `config`), database, blueprints."""
    # Imported here, not at the top: `import service.validation` (the CLI's validate, the benchmarks, a
    # library user) then costs no Flask, SQLAlchemy or exchange imports (≈ 1 s of a cold start).
    from service.app.runtime import Runtime
    from service.config import Settings

    settings = config if isinstance(config, Settings) else Settings.load(config)
    from service.web import logs

    logs.configure(settings.log_level)  # JSON lines without PHI: no URLs, query strings or bodies
    from service.web.application import App

    app = App(__name__)
    logs.init_app(app)  # first, so every later hook's refusal is logged with a request id
    # Werkzeug's own cap too, so chunked bodies without Content-Length are cut off as well.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["kfhir"] = Runtime.build(settings)

    from service.web import admin, domain_api, errors, exchange_api, fhir_api, health

    errors.register(app)
    from service.security import Security
    from service.web import audit_api, auth

    # deny by default on /api and /fhir, and audit every access there
    auth.init_app(app, Security.build(settings, app.extensions["kfhir"].engine))
    app.register_blueprint(health.bp)
    app.register_blueprint(audit_api.bp)
    app.register_blueprint(domain_api.bp)
    app.register_blueprint(fhir_api.bp)
    app.register_blueprint(exchange_api.bp)
    admin.init_app(app)
    from service.web import limits

    limits.init_app(app, settings.rate_limit, settings.database_url)  # last: after authentication has named the client
    return app
