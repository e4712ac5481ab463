"""Helpers of the admin console tests: the account they sign in with, CSRF tokens, signing in."""
from __future__ import annotations

import re
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
