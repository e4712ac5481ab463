"""The app serving this request: its runtime (settings, stores, the FHIR server), and the request's JSON body."""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from flask import current_app, g, request
from werkzeug.sansio.utils import get_current_url

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
    return configured.rstrip("/") if configured else _host_root(request.scheme, request.host)


@lru_cache(maxsize=64)
def _host_root(scheme: str, host: str) -> str:
    """request.host_url without its trailing slash, made once per scheme and Host: werkzeug makes it anew for each
    request (uri_to_iri: ~50 µs, what every audited request's event and every Location header asks)."""
    return get_current_url(scheme, host).rstrip("/")
