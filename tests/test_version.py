"""The version has one source, pyproject.toml: the installed metadata, the OpenAPI document and the release date."""
from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest
import yaml

from service import version as version_module
from service.version import RELEASED, UNKNOWN, _source_version, version

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_pyprojects() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert version() == declared
    assert yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))["info"]["version"] == declared


def test_without_installed_metadata_the_source_tree_says_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def missing(name: str) -> str:
        raise version_module.PackageNotFoundError(name)

    monkeypatch.setattr(version_module, "installed_version", missing)
    version.cache_clear()
    try:
        assert version() == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    finally:
        version.cache_clear()
    assert _source_version(tmp_path / "pyproject.toml") == UNKNOWN
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert _source_version(tmp_path / "pyproject.toml") == UNKNOWN


def test_the_release_date_is_an_iso_date() -> None:
    assert date.fromisoformat(RELEASED).isoformat() == RELEASED
