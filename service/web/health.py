"""Liveness (/health) and readiness (/ready: database reachable and migrated)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.store.migrate import current_revision, head_revision
from service.web import current

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    return jsonify(status="ok")


@bp.get("/ready")
def ready() -> tuple[Response, int]:
    engine = current.runtime().engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        revision = current_revision(engine)
    except SQLAlchemyError:
        return jsonify(status="unavailable", database="unreachable"), 503
    head = head_revision()
    if revision != head:
        return jsonify(status="unavailable", database="not migrated", revision=revision, expected=head), 503
    return jsonify(status="ready", database="ok", revision=revision), 200
