"""FHIR R4 REST interface under /fhir: the facade's interactions, $validate and our conformance resources.

HTTP only: media types, headers (ETag, If-Match, If-None-Exist, Prefer, Location, Last-Modified)
and status codes. What happens to resources is the business of service/facade/ (server.py).
"""
from __future__ import annotations

import io
import json
from datetime import UTC
from email.utils import format_datetime
from typing import Any

from flask import Blueprint, Response, current_app, request

from service.conformance.package import CONFORMANCE_TYPES
from service.errors import (
    BadRequest,
    Issue,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PreconditionFailed,
    UnsupportedMediaType,
)
from service.facade.interactions import Written
from service.facade.server import FhirServer
from service.fhirjson import etag, if_match_version, issue, operation_outcome, version_id
from service.search.parameters import TYPES
from service.store.stored import StoredResource
from service.validation import default_validator
from service.validation.engine import UnknownProfile
from service.validation.policy import NO_TX, PolicyError, ValidationPolicy, domains
from service.validation.positions import locate, root_name
from service.web import auditing, auth, current
from service.web.body import JSON_TYPES

bp = Blueprint("fhir_api", __name__, url_prefix="/fhir")
FHIR_JSON = "application/fhir+json"
XML_TYPES = ("application/fhir+xml", "application/xml", "text/xml")
#: what a response in FHIR JSON satisfies, as a media type or a _format short name (http.html#mime)
JSON_ANSWERS = ("application/fhir+json", "application/json", "json", "application/*", "*/*", "*")


def _fhir() -> FhirServer:
    """The FHIR server writing on behalf of this request's client (its Provenance names the author)."""
    return current.runtime().fhir.acting_for(auth.author(), auth.may)


def _base() -> str:
    return current.public_root() + "/fhir"


@bp.before_request
def _formats() -> None:
    """The response is FHIR JSON for R4, or nothing: `_format` (which overrides Accept) and Accept that name
    no JSON type, or a fhirVersion other than 4.0, get 406 (http.html#mime, #version-parameter)."""
    wanted = _arg("_format")
    if wanted is not None:
        if not _json_type(wanted):
            raise NotAcceptable(f"_format {wanted!r} is not served: {_what_we_serve(wanted)}")
        return
    offered = [item.strip() for item in _header("ACCEPT").split(",") if item.strip()]
    if offered and not any(_json_type(item) for item in offered):
        raise NotAcceptable(f"Accept {request.headers['Accept']!r} names no format served: "
                            f"{_what_we_serve(' '.join(offered))}")


def _arg(name: str) -> str | None:
    """request.args.get(name), without the exception its miss raised and dropped (werkzeug's BadRequestKeyError: ~3 µs,
    twice a request)."""
    args = request.args
    return args.get(name) if name in args else None


def _header(name: str) -> str:
    """The request header `name` (in its WSGI spelling: PREFER, IF_NONE_EXIST), "" when absent: request.headers' value,
    without the KeyError its miss raised."""
    value: str = request.environ.get(f"HTTP_{name}", "")
    return value


def _json_type(media: str) -> bool:
    """Is `media` (a type with parameters, or a _format short name) R4 JSON, or a wildcard that JSON satisfies?"""
    name, *parameters = [part.strip() for part in media.split(";")]
    options = dict(p.partition("=")[::2] for p in parameters)
    options = {k.strip().lower(): v.strip().strip('"') for k, v in options.items()}
    if options.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
        return False
    return name.lower() in JSON_ANSWERS and _r4(options.get("fhirversion"))


def _r4(fhir_version: str | None) -> bool:
    return fhir_version is None or fhir_version == "4.0" or fhir_version.startswith("4.0.")


def _what_we_serve(asked: str) -> str:
    if "fhirversion" in asked.lower():
        return "this server speaks FHIR R4 only (fhirVersion=4.0, 4.0.1); ask for application/fhir+json."
    if "xml" in asked.lower():
        return "FHIR XML is not supported; use _format=json or Accept: application/fhir+json."
    return "this server answers in FHIR JSON only (_format=json, Accept: application/fhir+json)."


def _resource_body(bundle: bool = False) -> Any:
    if request.mimetype in XML_TYPES:
        raise UnsupportedMediaType("FHIR XML is not supported; send application/fhir+json.")
    if request.mimetype not in JSON_TYPES:
        raise UnsupportedMediaType(f"Send application/fhir+json, not {request.mimetype or 'no media type'!r}.")
    version = request.mimetype_params.get("fhirversion")
    if not _r4(version):
        raise UnsupportedMediaType(f"The body says fhirVersion={version}; this server takes FHIR R4 only "
                                   f"(application/fhir+json; fhirVersion=4.0).")
    return current.body(bundle)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None,
          outline: dict[str, Any] | None = None) -> Response:
    """`body` as FHIR JSON; a str is JSON text already, as json.dumps(ensure_ascii=False) writes it, and `outline`
    what the request's audit event reads of it (paging.Searchset)."""
    pretty = _arg("_pretty") == "true"
    if isinstance(body, str):
        text = json.dumps(json.loads(body), ensure_ascii=False, indent=2) if pretty else body
    else:
        text = json.dumps(body, ensure_ascii=False, indent=2 if pretty else None)
    response = Response(text, status=status, mimetype=FHIR_JSON)
    response.headers.update(headers or {})
    return auditing.shown(response, outline if isinstance(body, str) else body)


def _version_headers(stored: StoredResource) -> dict[str, str]:
    modified = stored.last_updated.replace(tzinfo=UTC)
    return {"ETag": etag(stored.version), "Last-Modified": format_datetime(modified, usegmt=True)}


def _written(written: Written) -> Response:
    stored = written.resource
    headers = _version_headers(stored)
    headers["Location"] = f"{_base()}/{stored.resource_type}/{stored.id}/_history/{stored.version}"
    prefer = _prefer("return")
    if prefer == "minimal":
        response = Response(status=written.status)
        response.headers.update(headers)
        return response
    if prefer == "OperationOutcome":
        outcome = operation_outcome(written.findings)
        outcome["issue"] += [issue("information", "informational", note) for note in written.notes]
        return _json(outcome, written.status, headers)
    return _json(_as_stored(stored), written.status, headers, outline=stored.content)


def _as_stored(stored: StoredResource) -> Any:
    """What _json answers with for a stored version: its text as stored, where the write had it (a create's or an
    update's: ~3 KB not encoded again), if it holds no \\u escape: json.dumps(ensure_ascii=False) writes the same
    text as the store's ASCII-escaping serialise but for the characters that one writes as \\uXXXX. Else its content."""
    text = stored.text
    return text if text is not None and "\\u" not in text else stored.content


def _prefer(name: str) -> str | None:
    for part in _header("PREFER").split(";"):
        for item in part.split(","):
            key, _, value = item.strip().partition("=")
            if key.strip() == name:
                return value.strip().strip('"')
    return None


def _if_match() -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    version = if_match_version(raw)
    if version is None:  # a condition that cannot hold (RFC 9110 §13.1.1)
        raise PreconditionFailed(f"If-Match {raw!r} is not an ETag this server issued (like W/\"1\").")
    return version


def _query_items() -> list[tuple[str, str]]:
    items = list(request.args.items(multi=True))
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        items += list(request.form.items(multi=True))
    return items


def _type(resource_type: str) -> str:
    if resource_type.startswith("$"):
        raise MethodNotAllowed(f"{resource_type} is an operation; this server runs $validate, by POST.")
    if resource_type in CONFORMANCE_TYPES:  # our IG's: readable (and searchable by url), not writable
        return resource_type
    current.runtime().fhir.check_type(resource_type)
    return resource_type


# --- system level ------------------------------------------------------------------------------

#: app.extensions key of the CapabilityStatement's JSON text by base URL (metadata), and how many bases it keeps (the
#: base comes from the Host header unless KFHIR_BASE_URL is set: any caller can name a new one)
CAPABILITY = "kfhir_capability_text"
CAPABILITY_BASES = 16


@bp.get("/metadata")
def metadata() -> Response:
    """The CapabilityStatement, made and serialised once per base: it depends on nothing else that can change while
    the app runs (the types, search parameters and profiles served, the version). Made for each request it cost more
    than a read of a stored resource (6.1 M instructions, 3 M of them its building and json.dumps)."""
    base = _base()
    made: dict[str, str] = current_app.extensions.setdefault(CAPABILITY, {})
    text = made.get(base)
    if text is None:
        text = json.dumps(current.runtime().fhir.capability(base), ensure_ascii=False)
        if len(made) < CAPABILITY_BASES:
            made[base] = text
    return _json(text)


@bp.post("")
@bp.post("/")  # `[base]/`: some clients (fhirpy's execute) post Bundles there; HAPI accepts it too
def bundle() -> Response:
    return _json(_fhir().bundle(_resource_body(bundle=True), _base(), auth.may))


@bp.get("/_history")
def history_system() -> Response:
    return _json(current.runtime().fhir.history(_base(), items=list(request.args.items(multi=True))))


# --- type level --------------------------------------------------------------------------------

@bp.get("/<resource_type>")
@bp.post("/<resource_type>/_search")
def search(resource_type: str) -> Response:
    if resource_type in CONFORMANCE_TYPES:
        return _json(_conformance_search(resource_type))
    lenient = _prefer("handling") == "lenient"
    answer = current.runtime().fhir.search_json(_type(resource_type), _query_items(), _base(), lenient,
                                                auth.can_read)
    return _json(answer.text, outline=answer.outline)


@bp.post("/<resource_type>")
def create(resource_type: str) -> Response:
    _writable(resource_type)
    return _written(_fhir().create(resource_type, _resource_body(), request.environ.get("HTTP_IF_NONE_EXIST")))


@bp.put("/<resource_type>")
def conditional_update(resource_type: str) -> Response:
    _writable(resource_type)
    if not request.query_string:
        raise BadRequest("PUT to a type needs search criteria (a conditional update) or an id in the URL.",
                         [Issue("url", f"expected {resource_type}/id or {resource_type}?identifier=…")])
    criteria = request.query_string.decode()
    return _written(_fhir().conditional_update(resource_type, criteria, _resource_body()))


@bp.delete("/<resource_type>")
def conditional_delete(resource_type: str) -> Response:
    raise MethodNotAllowed("Conditional delete is not supported; delete by id.")


@bp.get("/<resource_type>/_history")
def history_type(resource_type: str) -> Response:
    items = list(request.args.items(multi=True))
    return _json(current.runtime().fhir.history(_base(), _type(resource_type), items=items))


# --- instance level ----------------------------------------------------------------------------

@bp.get("/<resource_type>/<resource_id>")
def read(resource_type: str, resource_id: str) -> Response:
    if resource_type in CONFORMANCE_TYPES:
        return _json(_conformance_read(resource_type, resource_id))
    stored = current.runtime().fhir.read(_type(resource_type), resource_id)
    return _json(stored.content, 200, _version_headers(stored))


@bp.put("/<resource_type>/<resource_id>")
def update(resource_type: str, resource_id: str) -> Response:
    _writable(resource_type)
    return _written(_fhir().update(resource_type, resource_id, _resource_body(), _if_match()))


@bp.delete("/<resource_type>/<resource_id>")
def delete(resource_type: str, resource_id: str) -> Response:
    _writable(resource_type)
    stored = _fhir().delete(resource_type, resource_id)
    response = Response(status=204)
    response.headers["ETag"] = etag(stored.version)
    return response


@bp.route("/<resource_type>/<resource_id>", methods=["PATCH"])
def patch(resource_type: str, resource_id: str) -> Response:
    """Said outright rather than left to Flask's 405: what to do instead (the CapabilityStatement has no patch)."""
    raise MethodNotAllowed("PATCH (JSON Patch, FHIRPath Patch) is not supported: read the resource, change it and "
                           "PUT it back with If-Match set to the ETag read.")


@bp.get("/<resource_type>/<resource_id>/_history")
def history_instance(resource_type: str, resource_id: str) -> Response:
    return _json(current.runtime().fhir.history(_base(), _type(resource_type), resource_id,
                                         list(request.args.items(multi=True))))


@bp.get("/<resource_type>/<resource_id>/_history/<version>")
def vread(resource_type: str, resource_id: str, version: str) -> Response:
    number = version_id(version)
    if number is None:
        raise NotFound(f"{resource_type}/{resource_id} has no version {version!r}.")
    stored = current.runtime().fhir.read(_type(resource_type), resource_id, number)
    return _json(stored.content, 200, _version_headers(stored))


def _writable(resource_type: str) -> None:
    if resource_type in CONFORMANCE_TYPES:
        raise MethodNotAllowed(f"{resource_type} resources are the server's own conformance resources: read only.")
    _type(resource_type)


# --- conformance resources ---------------------------------------------------------------------

def _conformance() -> list[dict[str, Any]]:
    return list(default_validator().defs.own.values())


def _conformance_read(resource_type: str, resource_id: str) -> dict[str, Any]:
    for resource in _conformance():
        if resource.get("resourceType") == resource_type and resource.get("id") == resource_id:
            return resource
    raise NotFound(f"{resource_type}/{resource_id} is not one of this server's conformance resources.")


def _conformance_search(resource_type: str) -> dict[str, Any]:
    unknown = sorted(set(request.args) - {"url", "_format", "_pretty"})
    if unknown:
        raise BadRequest(f"{resource_type} is searchable by url only.", [Issue(n, "not supported") for n in unknown])
    url = request.args.get("url")
    found = [r for r in _conformance() if r.get("resourceType") == resource_type
             and (url is None or r.get("url") == url.split("|")[0])]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(found),
            "link": [{"relation": "self", "url": f"{_base()}/{resource_type}?{request.query_string.decode()}"}],
            "entry": [{"fullUrl": f"{_base()}/{resource_type}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                      for r in found]}


# --- $validate ---------------------------------------------------------------------------------

#: the terminology server of one $validate call, named as the HL7 validator's own parameters name it (its CLI's
#: `-tx`, its engine parameters' and matchbox's $validate `txServer`); `n/a` asks none
TX_PARAMETER = "txServer"
#: $validate's policy parameters (query or Parameters), each a field of ValidationPolicy (service/validation/policy.py)
POLICY_PARAMETERS = {"unknown-profile": "unknown_profile", "unknown-extension": "unknown_extension",
                     "extension-domain": "extension_domains", "our-profiles": "our_profiles",
                     "display-issues": "display_issues", "allow-example-urls": "allow_example_urls",
                     "assume-valid-rest-references": "assume_valid_rest_references",
                     TX_PARAMETER: "tx_server"}


def _operands(body: Any) -> tuple[Any, str | None, dict[str, list[str]]]:
    """The resource, profile and policy parameters of a $validate call: a raw resource, or Parameters (resource,
    profile, the policy's parameters); the query string may give profile and the policy too."""
    profile = request.args.get("profile")
    given = {name: request.args.getlist(name) for name in POLICY_PARAMETERS if name in request.args}
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = None
        for p in body.get("parameter") or []:
            if not isinstance(p, dict):
                continue
            if p.get("name") == "resource":
                resource = p.get("resource")
            elif p.get("name") == "profile":
                profile = p.get("valueCanonical") or p.get("valueUri") or profile
            elif p.get("name") in POLICY_PARAMETERS:
                value = next((v for k, v in p.items() if k.startswith("value")), None)
                given.setdefault(p["name"], []).append(str(value).lower() if isinstance(value, bool) else str(value))
        if resource is None:
            raise BadRequest("The Parameters resource has no 'resource' parameter.",
                             [Issue("Parameters.parameter", "add {name: resource, resource: {...}}")])
        return resource, profile, given
    return body, profile, given


def _policy(given: dict[str, list[str]]) -> ValidationPolicy:
    """The service's $validate policy (KFHIR_VALIDATION_*) with this call's parameters applied."""
    changes: dict[str, Any] = {}
    for name, values in given.items():
        field = POLICY_PARAMETERS[name]
        if field == "extension_domains":
            changes[field] = domains(values)
        elif field == "tx_server":
            changes[field] = _tx_server(values[-1])
        elif field in ("our_profiles", "allow_example_urls", "assume_valid_rest_references"):
            if values[-1].lower() not in ("true", "false"):
                raise BadRequest(f"{name} must be true or false.", [Issue(name, "true or false")])
            changes[field] = values[-1].lower() == "true"
        else:
            changes[field] = values[-1]
    try:
        return current.runtime().settings.validation_policy().replace(**changes)
    except PolicyError as exc:
        raise BadRequest(f"Invalid validation policy: {exc}.", [Issue(next(iter(given)), str(exc))]) from None


def _tx_server(value: str) -> str | None:
    """A call may name only a terminology server this service allows (KFHIR_TX_URL, KFHIR_TX_ALLOWED): any other
    URL would have this service send requests wherever a client points it."""
    if value == NO_TX:
        return None
    allowed = current.runtime().settings.tx_servers()
    if value.rstrip("/") not in allowed:
        shown = ", ".join(allowed) if allowed else "none is configured"
        raise BadRequest(f"{TX_PARAMETER} must be {NO_TX} or a terminology server this service allows "
                         f"(KFHIR_TX_URL, KFHIR_TX_ALLOWED: {shown}).", [Issue(TX_PARAMETER, "not an allowed server")])
    return value.rstrip("/")


def _body_text() -> str:
    """The request body as text, for issue positions; read once (within the size limit, +1 so that json_body
    still sees an oversized body) and put back as a stream for json_body, which parses it and enforces limits."""
    raw = request.stream.read(current.runtime().settings.max_body_bytes + 1)
    request.stream = io.BytesIO(raw)
    return raw.decode("utf-8", "replace")


def _validate(expected_type: str | None) -> Response:
    text = _body_text()
    body = _resource_body()
    resource, profile, given = _operands(body)
    policy = _policy(given)
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    auth.may_validate(auth.principal().grant, kind if isinstance(kind, str) else None)
    if expected_type and isinstance(resource, dict) and resource.get("resourceType") != expected_type:
        raise BadRequest(f"This is {expected_type}/$validate but the resource is a "
                         f"{resource.get('resourceType')!r}.", [Issue("resourceType", f"expected {expected_type}")])
    try:
        findings = default_validator().validate(resource, profile, policy=policy)
    except UnknownProfile:
        raise BadRequest(f"Profile {profile} is unknown.", [Issue("profile", "not a loaded StructureDefinition")]) \
            from None
    if resource is body:  # a raw resource: its positions in the request text are its elements' (Parameters: no)
        findings = locate(findings, text, root_name(resource))
    return _json(operation_outcome(findings))


@bp.post("/$validate")
def validate_any() -> Response:
    return _validate(None)


@bp.post("/<resource_type>/$validate")
def validate_typed(resource_type: str) -> Response:
    if not default_validator().is_resource_type(resource_type):
        raise NotFound(f"{resource_type} is not a FHIR R4 resource type.")
    return _validate(resource_type)


__all__ = ["TYPES", "bp"]
