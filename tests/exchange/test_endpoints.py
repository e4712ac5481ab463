"""The endpoints file: presets, auth kinds, secrets from the environment only, clear errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from service.exchange.auth import Basic, Bearer, SmartBackend, generate_key
from service.exchange.endpoints import EndpointError, load


def write(tmp_path: Path, *endpoints: dict[str, Any]) -> Path:
    path = tmp_path / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": list(endpoints)}), encoding="utf-8")
    return path


def test_no_file_no_endpoints() -> None:
    assert load(None) == []


def test_a_preset_fills_in_a_public_sandbox(tmp_path: Path) -> None:
    (hapi,) = load(write(tmp_path, {"name": "hapi", "preset": "hapi-public", "kinds": ["assessment"]}))
    assert hapi.base_url == "https://hapi.fhir.org/baseR4" and hapi.mode == "transaction"
    assert hapi.kinds == ("assessment",) and "never send real data" in hapi.note
    assert hapi.credentials() is None


def test_secrets_come_from_the_environment_and_are_never_shown(tmp_path: Path) -> None:
    pem, _ = generate_key("ES384")
    (tmp_path / "key.pem").write_bytes(pem)
    path = write(tmp_path,
                 {"name": "a", "base_url": "https://a.example/fhir", "auth": {"type": "basic", "user": "bridge",
                                                                             "password_env": "A_PASSWORD"}},
                 {"name": "b", "base_url": "https://b.example/fhir", "auth": {"type": "bearer", "token_env": "B_TOKEN"}},
                 {"name": "c", "base_url": "https://c.example/fhir", "auth": {
                     "type": "smart-backend", "client_id": "bridge", "key_file_env": "C_KEY",
                     "token_url": "https://c.example/token"}})
    env = {"A_PASSWORD": "s3cret-a", "B_TOKEN": "s3cret-b", "C_KEY": str(tmp_path / "key.pem")}
    a, b, c = load(path, env)
    assert isinstance(a.credentials(), Basic) and isinstance(b.credentials(), Bearer)
    smart = c.credentials()
    assert isinstance(smart, SmartBackend) and smart.algorithm == "ES384"
    shown = str([e.public() for e in (a, b, c)]) + repr(a) + repr(b)
    assert "s3cret" not in shown and "A_PASSWORD" in shown
    with pytest.raises(EndpointError, match="'B_TOKEN'"):
        load(path, {})[1].credentials()


@pytest.mark.parametrize("endpoint, message", [
    ({"base_url": "https://x.example"}, "every endpoint has a `name`"),
    ({"name": "x", "base_url": "ftp://x.example"}, "http(s) URL"),
    ({"name": "x", "preset": "nowhere"}, "unknown preset"),
    ({"name": "x", "base_url": "https://x.example", "mode": "carrier-pigeon"}, "mode must be one of"),
    ({"name": "x", "base_url": "https://x.example", "auth": {"type": "bearer", "token": "inline!"}},
     "secrets go in environment variables"),
    ({"name": "x", "base_url": "https://x.example", "kinds": ["lab-results"]}, "kinds must be among"),
    ({"name": "x", "base_url": "https://x.example", "max_entries": 0}, "max_entries ≥ 1"),
    ({"name": "x", "base_url": "https://x.example", "colour": "red"}, "unknown key(s) colour"),
])
def test_malformed_endpoints_are_refused_by_name(tmp_path: Path, endpoint: dict[str, Any], message: str) -> None:
    with pytest.raises(EndpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(write(tmp_path, endpoint))


def test_a_bad_file_stops_the_service_at_start_up(tmp_path: Path) -> None:
    from service.app.runtime import Runtime
    from service.config import Settings
    from service.errors import ConfigError

    path = write(tmp_path, {"name": "x"})
    with pytest.raises(ConfigError, match="KFHIR_ENDPOINTS_FILE"):
        Runtime.build(Settings.load({"database_url": f"sqlite:///{tmp_path / 'db'}", "endpoints_file": str(path)},
                                    environ={}))
