"""Who is calling: a bearer token becomes a Principal (an API key's client, or a JWT's client), or 401.

RFC 6750 §3: without credentials the challenge carries no error code; with a token we do not accept,
`error="invalid_token"`. The client learns nothing more (not whether the key was revoked, expired or
never existed); why it failed goes to our log, without the token.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from service.errors import Unauthorized
from service.security.keys import PREFIX, ApiClients
from service.security.scopes import Grant
from service.security.tokens import TokenError, TokenVerifier

log = logging.getLogger(__name__)
REALM = 'Bearer realm="ketamine-fhir"'


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `kind` is api-key or jwt; `issuer` names who vouches for `client_id`."""

    kind: str
    client_id: str
    issuer: str
    grant: Grant


class Authenticator:
    def __init__(self, clients: ApiClients, verifier: TokenVerifier | None, base_issuer: str) -> None:
        self.clients = clients
        self.verifier = verifier
        self.base_issuer = base_issuer  # what API-key clients are identified under in the audit

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("Authentication required: send Authorization: Bearer <token>.", REALM)
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authentication required: send Authorization: Bearer <token>.", REALM)
        principal = self._key(token) if token.startswith(PREFIX) else self._jwt(token)
        if principal is None:
            raise Unauthorized("The bearer token is not valid.",
                               f'{REALM}, error="invalid_token", error_description="The token is not valid"')
        return principal

    def _key(self, token: str) -> Principal | None:
        client = self.clients.authenticate(token)
        if client is None:
            log.info("refused an API key that is unknown, malformed or revoked")
            return None
        return Principal("api-key", client.name, self.base_issuer, client.grant)

    def _jwt(self, token: str) -> Principal | None:
        if self.verifier is None:
            log.info("refused a bearer token: no JWT issuer is configured and it is no API key")
            return None
        try:
            claims = self.verifier.verify(token)
        except TokenError as exc:
            log.info("refused a JWT: %s", exc)
            return None
        return Principal("jwt", claims.client_id, claims.issuer, Grant.of(claims.scopes))
