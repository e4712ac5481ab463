"""The product's name, version and release date, for the CapabilityStatement, the audit trail and the CLI.

The version is the distribution's (pyproject.toml), read from the installed package's metadata; from a
source tree that was never installed, from pyproject.toml itself.
"""
from __future__ import annotations

import tomllib
from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path

NAME = "Ketamine FHIR Bridge"
DISTRIBUTION = "ketamine-fhir"
#: The day this version was released. A CapabilityStatement's date must change with its version (R4
#: CapabilityStatement.date), so this moves with pyproject.toml's version; tests/test_version.py holds them together.
RELEASED = "2026-11-28"
UNKNOWN = "0+unknown"


@cache
def version() -> str:
    try:
        return installed_version(DISTRIBUTION)
    except PackageNotFoundError:
        return _source_version(Path(__file__).resolve().parent.parent / "pyproject.toml")


def _source_version(pyproject: Path) -> str:
    try:
        found = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return UNKNOWN
    return found if isinstance(found, str) else UNKNOWN
