"""Where the shipped data lives: profiles/ and mappings/, in a wheel (service/<name>) or a checkout."""
from __future__ import annotations

from pathlib import Path

from service.errors import ConfigError

_HERE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`profiles` or `mappings`: inside the installed package, else beside it in the source tree."""
    for candidate in (_HERE / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"cannot find the {name}/ directory next to {_HERE}")


def profiles_dir() -> Path:
    return data_dir("profiles")


def core_package_path() -> Path:
    return profiles_dir() / "core" / "hl7.fhir.r4.core-4.0.1.tgz"
