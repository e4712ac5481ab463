"""SMART Backend Services against a token endpoint that checks the client assertion as an EHR would:
signature with the registered public key, iss = sub = client id, aud = token URL, a fresh jti,
exp at most 5 minutes ahead, kid in the header, client_credentials with system/ scopes."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cli.support import kfhir
from flask import Flask, jsonify, request
from support.serving import free_port
from werkzeug.serving import make_server

from service.exchange.auth import SmartBackend, generate_key, key_id
from service.exchange.client import FhirClient, FhirError

CLIENT_ID = "ketamine-bridge"


@dataclass
class Ehr:
    base: str
    jwks: dict[str, Any]
    lifetime: int = 300
    tokens: list[str] = field(default_factory=list)
    jtis: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def ehr_app(ehr: Ehr) -> Flask:
    app = Flask("ehr")
    token_url = f"{ehr.base}/auth/token"

    @app.get("/fhir/.well-known/smart-configuration")
    def configuration() -> Any:
        return jsonify(token_endpoint=token_url, grant_types_supported=["client_credentials"])

    @app.post("/auth/token")
    def token() -> Any:
        form = request.form
        try:
            header = jwt.get_unverified_header(form["client_assertion"])
            key = next(k for k in ehr.jwks["keys"] if k["kid"] == header["kid"])
            public = jwt.PyJWK(key).key
            claims = jwt.decode(form["client_assertion"], public, algorithms=[key["alg"]], audience=token_url,
                                options={"require": ["iss", "sub", "aud", "exp", "jti"]})
            assert form["grant_type"] == "client_credentials"
            assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            assert claims["iss"] == claims["sub"] == CLIENT_ID
            assert claims["exp"] - time.time() <= 300
            assert claims["jti"] not in ehr.jtis
            assert all(s.startswith("system/") for s in form["scope"].split())
        except (StopIteration, KeyError, AssertionError, jwt.PyJWTError) as exc:
            ehr.refused.append(type(exc).__name__)
            return jsonify(error="invalid_client", error_description="assertion refused"), 401
        ehr.jtis.append(claims["jti"])
        issued = f"token-{len(ehr.tokens) + 1}"
        ehr.tokens.append(issued)
        return jsonify(access_token=issued, token_type="bearer",  # noqa: S106 - the OAuth token type
                       expires_in=ehr.lifetime, scope=form["scope"])

    @app.get("/fhir/metadata")
    def metadata() -> Any:
        if request.headers.get("Authorization") != f"Bearer {ehr.tokens[-1] if ehr.tokens else ''}":
            return jsonify(resourceType="OperationOutcome", issue=[{"severity": "error", "code": "login"}]), 401
        return jsonify(resourceType="CapabilityStatement", fhirVersion="4.0.1",
                       rest=[{"mode": "server", "interaction": [{"code": "transaction"}]}])

    return app


@pytest.fixture(params=["RS384", "ES384"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[Ehr, bytes]]:
    pem, jwks = generate_key(request.param)
    port = free_port()
    ehr = Ehr(f"http://127.0.0.1:{port}", jwks)
    server = make_server("127.0.0.1", port, ehr_app(ehr), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ehr, pem
    finally:
        server.shutdown()


def smart(ehr: Ehr, pem: bytes) -> SmartBackend:
    return SmartBackend(f"{ehr.base}/fhir", CLIENT_ID, pem, key_id(pem), "system/*.rs system/*.cu")


def test_the_token_is_obtained_once_and_reused(served: tuple[Ehr, bytes]) -> None:
    ehr, pem = served
    client = FhirClient(f"{ehr.base}/fhir", smart(ehr, pem))
    for _ in range(3):
        assert client.capabilities().fhir_version == "4.0.1"
    assert ehr.tokens == ["token-1"] and ehr.refused == []


def test_a_token_near_its_end_is_renewed_with_a_fresh_assertion(served: tuple[Ehr, bytes]) -> None:
    ehr, pem = served
    ehr.lifetime = 30  # under the 60 s early-renewal margin: every call asks again
    client = FhirClient(f"{ehr.base}/fhir", smart(ehr, pem))
    client.capabilities()
    client.capabilities()
    assert ehr.tokens == ["token-1", "token-2"] and len(set(ehr.jtis)) == 2


def test_a_401_from_the_fhir_server_gets_one_new_token(served: tuple[Ehr, bytes]) -> None:
    ehr, pem = served
    auth = smart(ehr, pem)
    client = FhirClient(f"{ehr.base}/fhir", auth)
    client.capabilities()
    ehr.tokens.append("revoked-elsewhere")  # the server no longer honours token-1
    assert client.capabilities().fhir_version == "4.0.1"
    assert ehr.tokens[-1] == "token-3"


def test_a_key_the_ehr_does_not_know_is_refused_clearly(served: tuple[Ehr, bytes]) -> None:
    ehr, _ = served
    other, _ = generate_key("RS384")
    with pytest.raises(FhirError, match="invalid_client"):
        FhirClient(f"{ehr.base}/fhir", smart(ehr, other)).capabilities()
    assert ehr.refused


def test_keys_generate_writes_a_private_key_and_prints_its_jwks(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "ehr.pem"
    done = kfhir("keys", "generate", "--out", out, "--algorithm", "ES384")
    assert done.returncode == 0, done.stderr
    jwks = json.loads(done.stdout)
    assert jwks["keys"][0]["kid"] == key_id(out.read_bytes()) and jwks["keys"][0]["alg"] == "ES384"
    assert "d" not in jwks["keys"][0]  # the public part only
    assert out.stat().st_mode & 0o077 == 0
    again = kfhir("keys", "generate", "--out", out)
    assert again.returncode == 2 and "never overwritten" in again.stderr
