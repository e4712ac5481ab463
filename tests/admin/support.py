"""Helpers of the admin console tests: the account they sign in with, CSRF tokens, signing in."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

USER = "alice"
PASSWORD = "correct horse battery staple"  # noqa: S105 - the test account's password
WRONG = "not the password"  # noqa: S105
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client: FlaskClient, path: str = "/admin/sign-in") -> str:
    """The CSRF token the form on `path` carries."""
    page = client.get(path)
    found = TOKEN.search(page.get_data(as_text=True))
    assert found, f"no CSRF token on {path} ({page.status_code})"
    return found.group(1)


def sign_in(client: FlaskClient, username: str = USER, password: str = PASSWORD, **extra: str) -> Any:
    return client.post("/admin/sign-in", data={"csrf_token": csrf(client), "username": username,
                                               "password": password, **extra})


# --- real processes: the console script and a live server ------------------------------------------

KFHIR = Path(sys.executable).parent / "ketamine-fhir"


def cli_env(database_url: str) -> dict[str, str]:
    """This environment without KFHIR_* settings (but the test PostgreSQL URL), on `database_url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFHIR_") or k == "KFHIR_TEST_POSTGRES_URL"}
    return env | {"KFHIR_DATABASE_URL": database_url}


def kfhir(*args: str, database_url: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the console script; a new session, so no terminal: prompts read standard input."""
    return subprocess.run([str(KFHIR), *args], env=cli_env(database_url), cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=60, start_new_session=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
