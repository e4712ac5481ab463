"""The `ketamine-fhir` console script as a user runs it: a real process per command.

Only what needs a process lives here: the installed entry point, exit statuses as the shell sees them, a
migration from a process of its own, a server on a real port. Every other CLI test runs in-process
(tests/cli/support.py)."""
from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError

import pytest
from factories import assessment
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from support.databases import fresh_database
from support.serving import run_script, script_env, served

from service.app.runtime import Runtime
from service.config import Settings
from service.resources import profiles_dir
from service.store.migrate import head_revision

EXAMPLES = profiles_dir() / "examples"


def run_cli(*args: str, database_url: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return run_script(*args, env=script_env(database_url, **settings), cwd=cwd, timeout=60)


@pytest.fixture
def fresh_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database nobody has migrated: a new SQLite file in a folder not yet made, or a new PostgreSQL database
    beside the test one."""
    backend = make_url(database_url).get_backend_name()
    with fresh_database(backend, database_url if backend == "postgresql" else None,
                        tmp_path / "not-yet-created") as url:
        yield url


# --- the entry point -----------------------------------------------------------------------

def test_help_lists_every_command_group(tmp_path: Path) -> None:
    result = run_cli("--help", database_url=f"sqlite:///{tmp_path / 'kfhir.db'}", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: ketamine-fhir [OPTIONS] COMMAND [ARGS]...")
    listed = result.stdout.split("Commands:", 1)[1].split()
    for command in ("admin", "clients", "db", "import", "keys", "map", "mappings", "profiles", "pull", "push",
                    "sandbox-check", "seed-demo", "serve", "validate", "worker"):
        assert command in listed


def test_an_unknown_command_exits_2_and_says_so(tmp_path: Path) -> None:
    result = run_cli("frobnicate", database_url=f"sqlite:///{tmp_path / 'kfhir.db'}", cwd=tmp_path)

    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr


def test_validate_exits_0_valid_1_invalid_2_usage(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'kfhir.db'}"
    valid = run_cli("validate", str(EXAMPLES / "Patient-demo-alpha.json"), database_url=database, cwd=tmp_path)
    invalid = run_cli("validate", str(EXAMPLES / "invalid" / "ketamine-administration--no-route.json"),
                      database_url=database, cwd=tmp_path)
    usage = run_cli("validate", str(tmp_path / "missing.json"), database_url=database, cwd=tmp_path)

    assert (valid.returncode, invalid.returncode, usage.returncode) == (0, 1, 2), valid.stderr + invalid.stderr
    assert ": valid (0 errors" in valid.stdout and ": INVALID (1 errors" in invalid.stdout
    assert "does not exist" in usage.stderr and "Traceback" not in usage.stderr


# --- db upgrade ----------------------------------------------------------------------------

@pytest.mark.both_backends  # migrations
def test_db_upgrade_creates_the_schema_on_a_new_database_and_a_second_run_changes_nothing(
        fresh_database_url: str, tmp_path: Path) -> None:
    first = run_cli("db", "upgrade", database_url=fresh_database_url, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert f"database at revision {head_revision()}" in first.stdout
    runtime = Runtime.build(Settings.load({"database_url": fresh_database_url}, environ={}))
    try:
        assert {"records", "record_versions", "alembic_version"} <= set(inspect(runtime.engine).get_table_names())
        stored = runtime.intake.submit("assessment", assessment()).record

        second = run_cli("db", "upgrade", database_url=fresh_database_url, cwd=tmp_path)

        assert second.returncode == 0, second.stderr
        assert f"database at revision {head_revision()}" in second.stdout
        assert runtime.store.get("assessment", stored.id) == stored  # data survives a repeated upgrade
        with runtime.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
    finally:
        runtime.engine.dispose()


# --- serve ---------------------------------------------------------------------------------

def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (a loopback URL we built)
            return resp.status, json.loads(resp.read())
    except HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_serve_answers_health_over_real_http_on_the_port_given(database_url: str, tmp_path: Path) -> None:
    with served(["serve"], script_env(database_url), tmp_path, ready="/health") as server:
        status, body = _get(f"{server.base}/health")
        assert (status, body) == (200, {"status": "ok"})
        # /ready proves the server uses the database KFHIR_DATABASE_URL names (migrated by the fixture).
        status, body = _get(f"{server.base}/ready")
        assert (status, body["database"]) == (200, "ok")
    assert server.base in server.log.read_text()
