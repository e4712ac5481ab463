"""One exception hierarchy for everything a caller can get wrong; rendered in one place (web/errors.py).

    KfhirError                      base; never raised itself
    ├── ConfigError                 bad settings at start-up (not an HTTP error)
    └── RequestError                carries an HTTP status, a title and issues [{field, message}]
        ├── BadRequest              400 malformed JSON, bad query parameters
        ├── Unauthorized            401 no bearer token, or one this server does not accept
        ├── Forbidden               403 the token's scopes do not cover the interaction
        ├── NotFound                404
        ├── MethodNotAllowed        405
        ├── NotAcceptable           406 a response format (Accept, _format, fhirVersion) this server does not give
        ├── Conflict                409 same external_id with different content
        │   └── Contention          409 concurrent writers collided; retried before it reaches a client
        ├── Gone                    410 a deleted FHIR resource
        ├── PreconditionFailed      412 stale If-Match
        ├── PayloadTooLarge         413
        ├── UnsupportedMediaType    415
        ├── Unprocessable           422 schema or clinical-rule errors
        ├── PreconditionRequired    428 PUT without If-Match
        ├── TooManyRequests         429 over the client's rate limit; `retry_after` seconds
        └── ServiceUnavailable      503 a write refused whole because its audit event could not be written;
            │                           `retry_after` seconds when given
            ├── TransactionLost     503 (store/group.py) the database rolled back a write's group commit
            └── WritersBusy         503 (store/group.py) a write waited past SQLite's busy timeout for its turn

The core raises these; it knows nothing of HTTP beyond the status number each carries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One finding about one field: `severity` is 'error' (rejected) or 'warning' (accepted, flagged)."""

    field: str
    message: str
    severity: str = "error"
    rule: str | None = None
    fhir_path: str | None = None  # a record's FHIR form broke a profile here (the detail behind `field`)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "message": self.message, "severity": self.severity}
        if self.rule:
            out["rule"] = self.rule
        if self.fhir_path:
            out["fhir_path"] = self.fhir_path
        return out


class KfhirError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(KfhirError):
    """A setting is missing or malformed; start-up stops with this message."""


class RequestError(KfhirError):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, issues: list[Issue] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.issues = issues or []
        self.extra = extra


class BadRequest(RequestError):
    status, title = 400, "Bad request"


class Unauthorized(RequestError):
    """`challenge` is the WWW-Authenticate value (RFC 6750 §3); the detail never says why a token failed."""

    status, title = 401, "Unauthorized"

    def __init__(self, detail: str, challenge: str) -> None:
        super().__init__(detail)
        self.challenge = challenge


class Forbidden(RequestError):
    status, title = 403, "Forbidden"

    def __init__(self, detail: str, challenge: str = "") -> None:
        super().__init__(detail)
        self.challenge = challenge


class NotFound(RequestError):
    status, title = 404, "Not found"


class MethodNotAllowed(RequestError):
    status, title = 405, "Method not allowed"


class NotAcceptable(RequestError):
    status, title = 406, "Not acceptable"


class Conflict(RequestError):
    status, title = 409, "Conflict"


class Contention(Conflict):
    """Concurrent writers met on a unique constraint; the same request again will pass."""


class Gone(RequestError):
    status, title = 410, "Gone"


class PreconditionFailed(RequestError):
    status, title = 412, "Precondition failed"


class PayloadTooLarge(RequestError):
    status, title = 413, "Payload too large"


class UnsupportedMediaType(RequestError):
    status, title = 415, "Unsupported media type"


class Unprocessable(RequestError):
    status, title = 422, "Unprocessable content"


class PreconditionRequired(RequestError):
    status, title = 428, "Precondition required"


class TooManyRequests(RequestError):
    """Rendered with a Retry-After header of `retry_after` whole seconds (RFC 9110 §10.2.3)."""

    status, title = 429, "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ServiceUnavailable(RequestError):
    """Rendered with a Retry-After header of `retry_after` whole seconds when one is given."""

    status, title = 503, "Service unavailable"

    def __init__(self, detail: str, issues: list[Issue] | None = None, retry_after: int | None = None,
                 **extra: Any) -> None:
        super().__init__(detail, issues, **extra)
        self.retry_after = retry_after
