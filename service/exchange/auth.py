"""Authentication to EHR FHIR servers: none, basic, bearer, and SMART Backend Services.

SMART Backend Services (hl7.org/fhir/smart-app-launch/backend-services.html): the token endpoint
comes from `{base}/.well-known/smart-configuration` (or is configured); the client proves itself
with a JWT signed RS384 or ES384 — `iss` = `sub` = client id, `aud` = the token URL, a fresh
`jti`, `exp` at most five minutes ahead, the key's `kid` in the header — in a
`client_credentials` grant for `system/` scopes. The token is reused until shortly before it
expires; a 401 from the FHIR server makes the caller ask for a new one once.
"""
from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Renew this many seconds before the server says the token expires.
EARLY_RENEWAL_S = 60
MAX_ASSERTION_LIFETIME_S = 300


class AuthError(Exception):
    """The token endpoint refused us, or could not be found."""


class Auth:
    """Adds credentials to a request; `refresh()` after a 401."""

    def headers(self, session: requests.Session) -> dict[str, str]:
        return {}

    def refresh(self) -> bool:
        """Drop a cached credential; True when asking again may help."""
        return False


@dataclass
class Basic(Auth):
    user: str
    password: str

    def headers(self, session: requests.Session) -> dict[str, str]:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


@dataclass
class Bearer(Auth):
    token: str

    def headers(self, session: requests.Session) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class SmartBackend(Auth):
    def __init__(self, base_url: str, client_id: str, private_key_pem: bytes, kid: str, scope: str,
                 token_url: str | None = None, algorithm: str | None = None, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.key = serialization.load_pem_private_key(private_key_pem, password=None)
        self.algorithm = algorithm or ("ES384" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "RS384")
        self.kid = kid
        self.scope = scope
        self.token_url = token_url
        self.timeout = timeout
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def headers(self, session: requests.Session) -> dict[str, str]:
        with self._lock:
            if self._token is None or time.time() >= self._expires - EARLY_RENEWAL_S:
                self._token, lifetime = self._request_token(session)
                self._expires = time.time() + lifetime
            return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> bool:
        with self._lock:
            self._token = None
        return True

    def assertion(self, token_url: str) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": token_url, "jti": str(uuid.uuid4()),
                  "iat": now, "exp": now + MAX_ASSERTION_LIFETIME_S}
        return jwt.encode(claims, self.key, algorithm=self.algorithm,  # type: ignore[arg-type]
                          headers={"kid": self.kid, "typ": "JWT"})

    def discover(self, session: requests.Session) -> str:
        if self.token_url:
            return self.token_url
        url = f"{self.base_url}/.well-known/smart-configuration"
        try:
            answer = session.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
            document = answer.json() if answer.ok else {}
        except (requests.RequestException, ValueError) as exc:
            raise AuthError(f"cannot read {url}: {exc}") from None
        endpoint = document.get("token_endpoint") if isinstance(document, dict) else None
        if not isinstance(endpoint, str):
            raise AuthError(f"{url} names no token_endpoint (HTTP {answer.status_code})")
        self.token_url = endpoint
        return endpoint

    def _request_token(self, session: requests.Session) -> tuple[str, float]:
        token_url = self.discover(session)
        form = {"grant_type": "client_credentials", "scope": self.scope, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(token_url)}
        try:
            answer = session.post(token_url, data=form, timeout=self.timeout, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise AuthError(f"token endpoint {token_url} unreachable: {type(exc).__name__}") from None
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if not answer.ok or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            error = body.get("error") if isinstance(body, dict) else None
            described = body.get("error_description") if isinstance(body, dict) else None
            raise AuthError(f"token endpoint refused the client ({answer.status_code}"
                            f"{', ' + str(error) if error else ''}{': ' + str(described) if described else ''})")
        lifetime = body.get("expires_in", 300)
        return body["access_token"], float(lifetime) if isinstance(lifetime, int | float) else 300.0


# --- keys --------------------------------------------------------------------------------------

def generate_key(algorithm: str = "RS384") -> tuple[bytes, dict[str, Any]]:
    """A new private key (PEM) and the public JWKS to register with the EHR."""
    key: Any = ec.generate_private_key(ec.SECP384R1()) if algorithm == "ES384" else rsa.generate_private_key(
        public_exponent=65537, key_size=3072)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, jwks(pem, algorithm)


def jwks(private_pem: bytes, algorithm: str | None = None) -> dict[str, Any]:
    key: Any = serialization.load_pem_private_key(private_pem, password=None)
    algorithm = algorithm or ("ES384" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS384")
    public = json.loads(jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(key.public_key()))
    public.update(alg=algorithm, use="sig", kid=key_id(private_pem), key_ops=["verify"])
    return {"keys": [public]}


def key_id(private_pem: bytes) -> str:
    """A stable kid: the JWK thumbprint-like hash of the public key."""
    import hashlib

    key: Any = serialization.load_pem_private_key(private_pem, password=None)
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(public).hexdigest()[:16]
