"""FHIR R4 REST interface under /fhir. So far: the $validate operation (the facade comes with its issue)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, json, request

from service.errors import BadRequest, Issue, NotFound, UnsupportedMediaType
from service.runtime import Runtime
from service.validation import default_validator
from service.validation.engine import UnknownProfile
from service.validation.outcome import operation_outcome
from service.web.body import JSON_TYPES, json_body

bp = Blueprint("fhir_api", __name__, url_prefix="/fhir")
FHIR_JSON = "application/fhir+json"


def _resource_body() -> Any:
    if request.mimetype in ("application/fhir+xml", "application/xml", "text/xml"):
        raise UnsupportedMediaType("FHIR XML is not supported; send application/fhir+json.")
    if request.mimetype not in JSON_TYPES:
        raise UnsupportedMediaType(f"Send application/fhir+json, not {request.mimetype or 'no media type'!r}.")
    runtime: Runtime = current_app.extensions["kfhir"]
    return json_body(request, runtime.settings.max_body_bytes, runtime.settings.max_json_depth)


def _operands(body: Any) -> tuple[Any, str | None]:
    """The resource and profile of a $validate call: a raw resource, or Parameters (resource, profile)."""
    profile = request.args.get("profile")
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = None
        for p in body.get("parameter") or []:
            if not isinstance(p, dict):
                continue
            if p.get("name") == "resource":
                resource = p.get("resource")
            elif p.get("name") == "profile":
                profile = p.get("valueCanonical") or p.get("valueUri") or profile
        if resource is None:
            raise BadRequest("The Parameters resource has no 'resource' parameter.",
                             [Issue("Parameters.parameter", "add {name: resource, resource: {...}}")])
        return resource, profile
    return body, profile


def _validate(expected_type: str | None) -> Response:
    resource, profile = _operands(_resource_body())
    if expected_type and isinstance(resource, dict) and resource.get("resourceType") != expected_type:
        raise BadRequest(f"This is {expected_type}/$validate but the resource is a "
                         f"{resource.get('resourceType')!r}.", [Issue("resourceType", f"expected {expected_type}")])
    try:
        findings = default_validator().validate(resource, profile)
    except UnknownProfile:
        raise BadRequest(f"Profile {profile} is unknown.", [Issue("profile", "not a loaded StructureDefinition")]) \
            from None
    return Response(json.dumps(operation_outcome(findings)), status=200, mimetype=FHIR_JSON)


@bp.post("/$validate")
def validate_any() -> Response:
    return _validate(None)


@bp.post("/<resource_type>/$validate")
def validate_typed(resource_type: str) -> Response:
    if not default_validator().is_resource_type(resource_type):
        raise NotFound(f"{resource_type} is not a FHIR R4 resource type.")
    return _validate(resource_type)
