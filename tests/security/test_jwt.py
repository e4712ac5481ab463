"""JWT access tokens: signature against the issuer's JWKS (served for real on loopback), exp, aud, iss;
the JWKS cached as its Cache-Control says, refetched for a key id it lacks."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.config import Settings
from service.errors import ConfigError
from service.security.keys import PEPPER
from service.security.tokens import cache_seconds
from service.store.engine import make_engine
from service.store.migrate import upgrade

ISSUER = "https://auth.hospital.example"
AUDIENCE = "https://kfhir.hospital.example/fhir"


@dataclass
class Issuer:
    """A JWKS endpoint on loopback: the keys it publishes, its Cache-Control, how often it was asked."""

    keys: dict[str, Any] = field(default_factory=dict)
    cache_control: str = "max-age=600"
    hits: int = 0
    url: str = ""
    status: int = 200
    delay: float = 0.0  # seconds before answering (a hanging issuer)

    def publish(self, kid: str, private: Any) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key())) \
            if isinstance(private, rsa.RSAPrivateKey) else json.loads(jwt.algorithms.ECAlgorithm.to_jwk(
                private.public_key()))
        self.keys[kid] = jwk | {"kid": kid, "use": "sig"}


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    state = Issuer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            state.hits += 1
            time.sleep(state.delay)
            body = json.dumps({"keys": list(state.keys.values())}).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", state.cache_control)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def rsa_key(issuer: Issuer) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.publish("key-1", key)
    return key


@pytest.fixture
def jwt_app(settings: Settings, issuer: Issuer) -> Iterator[Flask]:
    application = create_app(settings.replace(oauth_issuer=ISSUER, oauth_audience=AUDIENCE,
                                              oauth_jwks_url=issuer.url))
    yield application
    application.extensions["kfhir"].engine.dispose()


@pytest.fixture
def anonymous(jwt_app: Flask) -> FlaskClient:
    return FlaskClient(jwt_app, jwt_app.response_class)


def token(key: Any, kid: str = "key-1", alg: str = "RS384", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ehr-app", "client_id": "ehr-app", "iat": now,
            "exp": now + 300, "jti": str(uuid.uuid4()), "scope": "system/Patient.rs system/Observation.cruds"}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers={"kid": kid})


def get(client: FlaskClient, bearer: str, path: str = "/fhir/Patient") -> Any:
    return client.get(path, headers={"Authorization": f"Bearer {bearer}"})


def test_a_valid_token_is_accepted_with_its_scopes(anonymous: FlaskClient, rsa_key: rsa.RSAPrivateKey) -> None:
    assert get(anonymous, token(rsa_key)).status_code == 200
    assert get(anonymous, token(rsa_key), "/fhir/Practitioner").status_code == 403  # not in its scopes
    assert get(anonymous, token(rsa_key, scope="system/*.read"), "/fhir/Practitioner").status_code == 200


def test_an_ec_signed_token_is_accepted(anonymous: FlaskClient, issuer: Issuer) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    issuer.publish("ec-1", key)
    assert get(anonymous, token(key, kid="ec-1", alg="ES384")).status_code == 200


@pytest.mark.parametrize("claims", [
    {"exp": -3600},                              # expired (times: seconds from when the test runs)
    {"aud": "https://someone-else.example"},     # for another server
    {"iss": "https://evil.example"},             # from another issuer
    {"exp": None},                               # without expiry
    {"nbf": 3600},                               # not yet valid
])
def test_claims_we_do_not_accept_are_401(anonymous: FlaskClient, rsa_key: rsa.RSAPrivateKey,
                                         claims: dict[str, Any]) -> None:
    """Times are taken when the test runs, not when it is collected: a make test of 83 minutes (load 13) ran the
    'not yet valid' case after its nbf, collected as now + 1 hour, had passed."""
    now = int(time.time())
    claims = {k: now + v if k in ("exp", "nbf") and v is not None else v for k, v in claims.items()}
    response = get(anonymous, token(rsa_key, **claims))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_signature_by_another_key_or_algorithm_is_401(anonymous: FlaskClient, rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert get(anonymous, token(other)).status_code == 401                      # same kid, wrong key
    public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    # the classic confusion: the public key used as an HMAC secret (PyJWT will not sign it, so by hand)
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    signing_input = part({"alg": "HS256", "typ": "JWT", "kid": "key-1"}) + "." + part(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "scope": "system/*.read", "exp": int(time.time()) + 60})
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    hs = signing_input + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    assert get(anonymous, hs).status_code == 401
    unsigned = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}, None,
                          algorithm="none", headers={"kid": "key-1"})
    assert get(anonymous, unsigned).status_code == 401


def test_the_jwks_is_cached_as_cache_control_says(anonymous: FlaskClient, issuer: Issuer,
                                                  rsa_key: rsa.RSAPrivateKey) -> None:
    for _ in range(3):
        assert get(anonymous, token(rsa_key)).status_code == 200
    assert issuer.hits == 1


def test_no_store_means_every_token_fetches_the_keys(anonymous: FlaskClient, issuer: Issuer,
                                                    rsa_key: rsa.RSAPrivateKey) -> None:
    issuer.cache_control = "no-store"
    for _ in range(2):
        assert get(anonymous, token(rsa_key)).status_code == 200
    assert issuer.hits == 2


def test_a_rotated_key_is_fetched_once_and_made_up_key_ids_do_not_hammer_the_issuer(
        anonymous: FlaskClient, issuer: Issuer, rsa_key: rsa.RSAPrivateKey, jwt_app: Flask) -> None:
    assert get(anonymous, token(rsa_key)).status_code == 200
    cache = jwt_app.extensions["kfhir_security"].authenticator.verifier.jwks
    cache._fetched -= 60  # the last fetch was a minute ago
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.publish("key-2", rotated)
    assert get(anonymous, token(rotated, kid="key-2")).status_code == 200
    assert issuer.hits == 2
    for n in range(5):
        assert get(anonymous, token(rotated, kid=f"made-up-{n}")).status_code == 401
    assert issuer.hits == 2  # refetching waits REFETCH_MIN_S


def test_an_unreachable_issuer_means_401_not_500(settings: Settings, rsa_key: rsa.RSAPrivateKey) -> None:
    application = create_app(settings.replace(oauth_issuer=ISSUER, oauth_audience=AUDIENCE,
                                              oauth_jwks_url="http://127.0.0.1:9/jwks.json"))
    try:
        response = get(FlaskClient(application, application.response_class), token(rsa_key))
    finally:
        application.extensions["kfhir"].engine.dispose()
    assert response.status_code == 401


def test_a_failed_jwks_fetch_starts_the_refetch_throttle(anonymous: FlaskClient, issuer: Issuer,
                                                         rsa_key: rsa.RSAPrivateKey) -> None:
    """Issue 20, item 5: an issuer answering 500 was asked again for every token."""
    issuer.status = 500
    for n in range(5):
        assert get(anonymous, token(rsa_key, kid=f"made-up-{n}")).status_code == 401
    assert issuer.hits == 1


def test_a_hanging_jwks_does_not_stall_a_client_whose_key_is_cached(
        jwt_app: Flask, issuer: Issuer, rsa_key: rsa.RSAPrivateKey) -> None:
    """Issue 20, item 5: the cache fetched while holding its lock, so four garbage tokens against a hanging
    issuer blocked a valid client for 19.6 s."""
    client = FlaskClient(jwt_app, jwt_app.response_class)
    assert get(client, token(rsa_key)).status_code == 200
    jwt_app.extensions["kfhir_security"].authenticator.verifier.jwks._fetched -= 60
    issuer.delay = 3.0
    garbage = [threading.Thread(target=get, args=(FlaskClient(jwt_app, jwt_app.response_class),
                                                   token(rsa_key, kid=f"garbage-{n}"))) for n in range(4)]
    for thread in garbage:
        thread.start()
    time.sleep(0.2)  # a garbage token's refetch is under way
    started = time.monotonic()
    answered = get(client, token(rsa_key)).status_code
    waited = time.monotonic() - started
    for thread in garbage:
        thread.join(timeout=30)

    assert answered == 200 and waited < 1.0
    assert issuer.hits == 2


@pytest.mark.parametrize("claims", [
    {"scope": 123},                                  # not a string: a TypeError, once a 500
    {"scope": {"system/*.read": True}},
    {"exp": int(time.time()) + 10 * 365 * 86400},    # ten years
    {"client_id": "admin:admin"},                    # the console's admin, as the audit names it
    {"client_id": "x" * 300},
])
def test_claims_that_once_passed_or_failed_with_500_are_401(anonymous: FlaskClient, rsa_key: rsa.RSAPrivateKey,
                                                            claims: dict[str, Any]) -> None:
    assert get(anonymous, token(rsa_key, **claims)).status_code == 401


def test_an_algorithm_that_does_not_fit_the_key_is_401(anonymous: FlaskClient, rsa_key: rsa.RSAPrivateKey) -> None:
    ec_key = ec.generate_private_key(ec.SECP384R1())
    assert get(anonymous, token(ec_key, kid="key-1", alg="ES384")).status_code == 401  # key-1 is RSA


def test_issuer_audience_and_jwks_url_come_together() -> None:
    with pytest.raises(ConfigError, match="KFHIR_OAUTH_AUDIENCE"):
        Settings.load({"oauth_issuer": ISSUER, "oauth_jwks_url": "https://x/jwks"}, environ={})
    loaded = Settings.load(environ={"KFHIR_OAUTH_ISSUER": ISSUER, "KFHIR_OAUTH_AUDIENCE": AUDIENCE,
                                    "KFHIR_OAUTH_JWKS_URL": "https://auth.hospital.example/jwks"})
    assert loaded.oauth_audience == AUDIENCE


@pytest.mark.parametrize(("header", "seconds"), [
    ("max-age=120", 120), ("public, max-age=3600, must-revalidate", 3600), ("no-store", 0), ("no-cache", 0),
    (None, 300), ("max-age=999999999", 86400), ("private", 300)])
def test_cache_seconds(header: str | None, seconds: int) -> None:
    assert cache_seconds(header) == seconds


# --- the pepper: made before any write, never inside one ---------------------------------------------------

def without_pepper(database_url: str) -> None:
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as raw:
        raw.execute("DELETE FROM admin_secrets WHERE name = ?", (PEPPER,))


def has_pepper(database_url: str) -> bool:
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as raw:
        return raw.execute("SELECT 1 FROM admin_secrets WHERE name = ?", (PEPPER,)).fetchone() is not None


def test_the_app_makes_the_pepper_when_it_is_built(settings: Settings) -> None:
    """Not at a write's audit, inside the write's unit, where making it is a write of its own (group commit)."""
    without_pepper(settings.database_url)
    application = create_app(settings)
    try:
        assert has_pepper(settings.database_url)
    finally:
        application.extensions["kfhir"].engine.dispose()


def test_an_app_built_before_the_migration_makes_the_pepper_before_its_first_write(
        tmp_path: Path, issuer: Issuer, rsa_key: rsa.RSAPrivateKey) -> None:
    """A JWT client's create (no API key was hashed) of a patient whose identifier the audit hashes, first
    request to an app built on a database migrated afterwards: 201, its audit event keyed by the pepper. When the
    audit hook made the pepper inside the create's unit, it waited for its own write lock and refused it (503)."""
    url = f"sqlite:///{tmp_path / 'later.db'}"
    application = create_app(Settings.load({"database_url": url, "oauth_issuer": ISSUER, "oauth_audience": AUDIENCE,
                                            "oauth_jwks_url": issuer.url}, environ={}))
    engine = make_engine(url)
    try:
        upgrade(engine)
        assert not has_pepper(url)
        bearer = token(rsa_key, scope="system/Patient.cruds")
        answer = FlaskClient(application, application.response_class).post(
            "/fhir/Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}]},
            headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/fhir+json"})
        assert answer.status_code == 201, answer.get_data(as_text=True)
        assert has_pepper(url)
    finally:
        application.extensions["kfhir_security"].audit.close()
        application.extensions["kfhir"].engine.dispose()
        engine.dispose()
