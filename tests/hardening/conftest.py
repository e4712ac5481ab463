"""Fixtures of the hardening tests. (Modules here never `import conftest`: that would load tests/conftest.py a
second time, and its second TokenClient, with no keys, would replace the one every app's test client uses.)"""
from __future__ import annotations

import pytest
from sqlalchemy import Engine


@pytest.fixture
def postgres_admin_url(postgres_engine: Engine) -> str:
    """The URL of the test PostgreSQL server, to create fresh databases beside the test one."""
    return postgres_engine.url.render_as_string(hide_password=False)
