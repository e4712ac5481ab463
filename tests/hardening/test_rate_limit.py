"""Per-client rate limit: 429 with Retry-After once a client's bucket is empty, per client, off by default."""
from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.config import Settings
from service.errors import ConfigError
from service.web.limits import MAX_BUCKETS, RateLimiter

LIMIT = 5


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings.load({"database_url": database_url, "rate_limit": LIMIT}, environ={})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_over_its_limit_gets_429_with_retry_after_on_both_apis(client: FlaskClient) -> None:
    answers = [client.get("/api/v1/assessments").status_code for _ in range(LIMIT)]
    assert answers == [200] * LIMIT
    refused = client.get("/api/v1/assessments")
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60 // LIMIT
    assert "5 requests a minute" in refused.json["detail"]
    fhir = client.get("/fhir/Patient")
    assert fhir.status_code == 429 and fhir.json["resourceType"] == "OperationOutcome"
    assert fhir.json["issue"][0]["code"] == "throttled" and "Retry-After" in fhir.headers


def test_probes_are_never_limited(client: FlaskClient) -> None:
    for _ in range(LIMIT * 3):
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
    assert client.get("/api/v1/assessments").status_code == 200


def test_each_client_has_its_own_bucket(client: FlaskClient, api_key: object) -> None:
    for _ in range(LIMIT):
        client.get("/api/v1/assessments")
    assert client.get("/api/v1/assessments").status_code == 429
    other = api_key("system/ketamine-records.rs")  # type: ignore[operator]
    answer = client.get("/api/v1/assessments", headers={"Authorization": f"Bearer {other}"})
    assert answer.status_code == 200


def test_the_limit_is_off_by_default(database_url: str) -> None:
    app: Flask = create_app(Settings.load({"database_url": database_url}, environ={}))
    assert Settings().rate_limit == 0 and "kfhir_rate_limiter" not in app.extensions
    client = app.test_client()
    assert all(client.get("/fhir/metadata").status_code == 200 for _ in range(50))
    app.extensions["kfhir"].engine.dispose()


def test_tokens_come_back_at_the_configured_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)  # one a second, bursts of 60
    assert all(limiter.take("a") == 0 for _ in range(60))
    assert limiter.take("a") == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("a") == 0
    assert limiter.take("b") == 0  # another key is untouched


def test_full_buckets_are_forgotten_so_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    for n in range(MAX_BUCKETS + 1):
        limiter.take(f"caller-{n}")
    clock.now += 61
    limiter.take("one-more")
    assert len(limiter._buckets) <= 2


def test_a_negative_limit_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="KFHIR_RATE_LIMIT"):
        Settings.load({"rate_limit": -1}, environ={})
