"""`ketamine-fhir clients add | list | revoke | demo-key`, as an operator or a script runs them; the key
printed works against the app, and stops working when revoked."""
from __future__ import annotations

from pathlib import Path

from cli.support import kfhir
from flask import Flask
from flask.testing import FlaskClient


def _works(app: Flask, key: str) -> int:
    client = FlaskClient(app, app.response_class)
    return client.get("/fhir/Patient", headers={"Authorization": f"Bearer {key}"}).status_code


def test_add_prints_the_key_alone_on_the_last_line_and_list_never_shows_it(
        app: Flask, database_url: str, tmp_path: Path) -> None:
    added = kfhir("clients", "add", "EHR-Feed", "--scopes", "system/Patient.rs system/Observation.cruds",
                  database_url=database_url, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    key = added.stdout.splitlines()[-1]
    assert key.startswith("kfhir_") and " " not in key
    assert _works(app, key) == 200
    listed = kfhir("clients", "list", database_url=database_url, cwd=tmp_path)
    assert "ehr-feed\tactive\tsystem/Patient.rs system/Observation.cruds" in listed.stdout
    secret = key.split("_", 2)[2]  # kfhir_<key id>_<secret>: the secret's 43 characters may hold "_" themselves
    assert len(secret) == 43 and key not in listed.stdout and secret not in listed.stdout

    revoked = kfhir("clients", "revoke", "ehr-feed", database_url=database_url, cwd=tmp_path)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert _works(app, key) == 401
    again = kfhir("clients", "revoke", "ehr-feed", database_url=database_url, cwd=tmp_path)
    assert again.returncode == 2 and "no active client" in again.stderr


def test_add_refuses_bad_scopes_and_taken_names_as_usage_errors(database_url: str, tmp_path: Path) -> None:
    bad = kfhir("clients", "add", "x", "--scopes", "patient/*.read", database_url=database_url, cwd=tmp_path)
    assert bad.returncode == 2 and "not a system scope" in bad.stderr
    taken = kfhir("clients", "add", "tests", "--scopes", "system/*.rs", database_url=database_url, cwd=tmp_path)
    assert taken.returncode == 2 and "exists already" in taken.stderr


def test_demo_key_is_made_only_when_no_client_exists(database_url: str, tmp_path: Path) -> None:
    # the test database already holds the `tests` client: nothing to do
    first = kfhir("clients", "demo-key", database_url=database_url, cwd=tmp_path)
    assert first.returncode == 0 and "exists already" in first.stdout
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert kfhir("db", "upgrade", database_url=fresh, cwd=tmp_path).returncode == 0
    made = kfhir("clients", "demo-key", database_url=fresh, cwd=tmp_path)
    assert made.returncode == 0 and made.stdout.splitlines()[-1].startswith("kfhir_")
    assert "exists already" in kfhir("clients", "demo-key", database_url=fresh, cwd=tmp_path).stdout
