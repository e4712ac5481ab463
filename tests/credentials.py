"""The credentials every test client sends (tests/conftest.py installs TokenClient for all Flask apps).

Kept out of conftest.py: a test module that does `from conftest import …` loads conftest a second
time, and its second KEYS would be empty; this module is loaded once."""
from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

#: what the default test client may do: everything there is a scope for
FULL_SCOPES = ["system/*.cruds", "system/ketamine-records.cruds", "system/ketamine-exchange.cruds",
               "system/AuditEvent.rs"]
#: database URL → the key of its `tests` client
KEYS: dict[str, str] = {}


class TokenClient(FlaskClient):
    """A test client that authenticates as the `tests` client of its app's database (an explicit
    Authorization header still wins)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        key = KEYS.get(self.application.extensions["kfhir"].settings.database_url)
        if key:
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
