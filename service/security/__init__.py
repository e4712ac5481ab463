"""API security: who may call (authn), what they may do (scopes), and what they did (audit).

    scopes.py   SMART v1/v2 system scopes and the Grant that checks them
    keys.py     API clients: keys made once, stored as keyed hashes, revocable
    tokens.py   JWT access tokens verified against a configured issuer's JWKS
    authn.py    a bearer token → a Principal, or 401
    audit.py    the append-only AuditEvent trail (IHE BALP RESTful patterns)

The web layer (service/web/auth.py) calls these; none of them knows Flask.
"""
from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.config import Settings
from service.security.audit import AuditLog
from service.security.authn import Authenticator
from service.security.keys import ApiClients
from service.security.tokens import TokenVerifier

#: how API-key clients are named in audit records (the issuer of their identity is this server)
LOCAL_ISSUER = "urn:ketamine-fhir:api-client"


@dataclass
class Security:
    clients: ApiClients
    authenticator: Authenticator
    audit: AuditLog

    @classmethod
    def build(cls, settings: Settings, engine: Engine) -> Security:
        clients = ApiClients(engine)
        # made now, outside any write: a write's audit hook (inside its unit) then only reads it; on a database not
        # migrated yet, made before the first write instead (web/auth)
        with suppress(SQLAlchemyError):
            clients.pepper()
        verifier = None
        if settings.oauth_issuer:
            verifier = TokenVerifier(settings.oauth_issuer, settings.oauth_audience, settings.oauth_jwks_url)
        return cls(clients, Authenticator(clients, verifier, LOCAL_ISSUER), AuditLog(engine, clients.pepper))
