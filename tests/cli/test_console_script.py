"""The `ketamine-fhir` console script as a user runs it: a real process per command.

Only what needs a process lives here: the installed entry point, exit statuses as the shell sees them, a
migration from a process of its own, a server on a real port. Every other CLI test runs in-process
(tests/cli/support.py)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError, URLError

import pytest
from factories import assessment
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from service.app.runtime import Runtime
from service.config import Settings
from service.resources import profiles_dir
from service.store.migrate import head_revision

KFHIR = Path(sys.executable).parent / "ketamine-fhir"
SERVE_START_TIMEOUT = 20.0
EXAMPLES = profiles_dir() / "examples"


def cli_env(database_url: str, **settings: str) -> dict[str, str]:
    """This process's environment without any KFHIR_* setting, then the database and `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFHIR_") or k == "KFHIR_TEST_POSTGRES_URL"}
    return env | {"KFHIR_DATABASE_URL": database_url} | settings


def run_cli(*args: str, database_url: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KFHIR), *args], env=cli_env(database_url, **settings), cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def fresh_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database nobody has migrated: a new SQLite file, or a new PostgreSQL database beside the test one."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'not-yet-created' / 'fresh.db'}"
        return
    name = f"kfhir_fresh_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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


def _wait_until_serving(proc: subprocess.Popen[bytes], url: str, log: Path) -> tuple[int, dict[str, object]]:
    deadline = time.monotonic() + SERVE_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode} before answering:\n{log.read_text()}")
        try:
            return _get(url)
        except (URLError, ConnectionError):
            time.sleep(0.05)
    pytest.fail(f"serve did not answer {url} within {SERVE_START_TIMEOUT} s:\n{log.read_text()}")


def test_serve_answers_health_over_real_http_on_the_port_given(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(KFHIR), "serve", "--port", str(port)], env=cli_env(database_url),
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        status, body = _wait_until_serving(proc, f"http://127.0.0.1:{port}/health", log)
        assert (status, body) == (200, {"status": "ok"})
        # /ready proves the server uses the database KFHIR_DATABASE_URL names (migrated by the fixture).
        status, body = _get(f"http://127.0.0.1:{port}/ready")
        assert (status, body["database"]) == (200, "ok")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert f"http://127.0.0.1:{port}" in log.read_text()
