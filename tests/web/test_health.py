"""Liveness and readiness."""
from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from service import create_app
from service.store.migrate import head_revision


def test_health_is_ok(client: FlaskClient) -> None:
    assert client.get("/health").get_json() == {"status": "ok"}


def test_ready_when_database_is_migrated(client: FlaskClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 200 and response.get_json()["revision"] == head_revision()


def test_not_ready_on_an_unmigrated_database(tmp_path: Path) -> None:
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    response = app.test_client().get("/ready")
    assert response.status_code == 503 and response.get_json()["database"] == "not migrated"


def test_not_ready_when_database_is_unreachable() -> None:
    app = create_app({"database_url": "postgresql://nobody@127.0.0.1:1/none"})
    response = app.test_client().get("/ready")
    assert response.status_code == 503 and response.get_json() == {"status": "unavailable", "database": "unreachable"}
