"""Request bodies: media type, size and depth checked before any JSON reaches the core."""
from __future__ import annotations

from typing import Any

from flask import Request

from service.errors import PayloadTooLarge, UnsupportedMediaType
from service.jsondoc import parse_json

JSON_TYPES = ("application/json", "application/fhir+json")


def json_body(request: Request, max_bytes: int, max_depth: int, max_items: int, max_values: int) -> Any:
    """The request's JSON document, or a 4xx error saying exactly what is wrong with it."""
    if request.mimetype not in JSON_TYPES:
        raise UnsupportedMediaType(f"Send the body as application/json, not {request.mimetype or 'no media type'!r}.")
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"The body is {request.content_length} bytes; the limit is {max_bytes}.")
    raw = request.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The body is larger than the limit of {max_bytes} bytes.")
    return parse_json(raw, max_depth, max_items, max_values)
