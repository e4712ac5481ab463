"""The app serving this request: its runtime (settings, stores, the FHIR server), and the request's JSON body."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app, g, request

from service.web.body import json_body

if TYPE_CHECKING:
    from service.app.runtime import Runtime


def runtime() -> Runtime:
    """What create_app built for this app (service/__init__.py)."""
    found: Runtime = current_app.extensions["kfhir"]
    return found


def body(bundle: bool = False) -> Any:
    """The request's JSON document, within the size, depth, array and value limits of the settings (a batch or
    transaction `bundle`'s grow with the entries it may hold)."""
    s = runtime().settings
    items, values = s.bundle_json_limits() if bundle else (s.max_json_items, s.max_json_values)
    doc = json_body(request, s.max_body_bytes, s.max_json_depth, items, values)
    g.kfhir_body = doc  # the audit reads a Bundle's entries from it (service/web/auditing.py)
    return doc


def public_root() -> str:
    """The service's public base URL without a trailing slash: KFHIR_BASE_URL, else (development) the Host header."""
    configured = runtime().settings.base_url
    return configured.rstrip("/") if configured else request.host_url.rstrip("/")
