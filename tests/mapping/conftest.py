"""Fixtures for the mapping tests."""
from __future__ import annotations

import pytest

from service.mapping import Mapper, default_mapper


@pytest.fixture(scope="session")
def mapper() -> Mapper:
    return default_mapper()
