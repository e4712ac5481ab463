"""Exchange API: the EHR endpoints this service sends records to (secrets never shown)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from service.runtime import Runtime

bp = Blueprint("exchange_api", __name__, url_prefix="/api/v1/exchange")


@bp.get("/endpoints")
def endpoints() -> Response:
    runtime: Runtime = current_app.extensions["kfhir"]
    return jsonify(endpoints=[e.public() for e in runtime.endpoints])
