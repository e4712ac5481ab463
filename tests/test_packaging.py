"""A plain (non-editable) wheel of the project carries the data files and the console script it needs."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from service.store.migrate import head_revision

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".hypothesis", "instance")
REQUIRED_FILES = [
    "service/profiles/README.md",
    "service/mappings/README.md",
    "service/store/migrations/env.py",
    "service/store/migrations/script.py.mako",
    "service/store/migrations/versions/0001_records.py",
    "service/store/migrations/versions/0002_fhir_resources.py",
    "service/mappings/administration.yaml",
    "service/mappings/people.yaml",
    "service/mapping/engine.py",
    "service/facade/server.py",
]


def missing_build_requirements() -> list[str]:
    """pyproject's [build-system] requires that this interpreter lacks (--no-build-isolation uses them)."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    missing = []
    for spec in map(Requirement, requires):
        try:
            if not spec.specifier.contains(version(spec.name), prereleases=True):
                missing.append(f"{spec} (have {version(spec.name)})")
        except PackageNotFoundError:
            missing.append(f"{spec} (not installed)")
    return missing


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the checkout, offline, so the build leaves nothing in the working tree."""
    missing = missing_build_requirements()
    if missing:
        pytest.fail(f"cannot build offline: {sys.executable} lacks {', '.join(missing)}; add them to the "
                    "test extras in pyproject.toml", pytrace=False)
    work = tmp_path_factory.mktemp("wheel")
    source = shutil.copytree(ROOT, work / "src", ignore=NOT_SOURCE)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--no-index", "--quiet", "-w", str(work / "dist"), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = (work / "dist").glob("ketamine_fhir-*.whl")
    return built


def test_the_wheel_contains_profiles_mappings_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())

    assert [f for f in REQUIRED_FILES if f not in names] == []
    assert not any(n.startswith(("tests/", "profiles/", "mappings/")) for n in names)


def test_the_wheel_declares_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        (entry_points,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(zf.read(entry_points).decode())

    assert parser["console_scripts"]["ketamine-fhir"] == "service.cli:main"


def test_the_installed_wheel_finds_its_migrations(wheel: Path, tmp_path: Path) -> None:
    """Run from the unpacked wheel, not the checkout: `db upgrade` must find migrations inside the package."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import service, sys; from service.cli import main; "
            "print(service.__file__, file=sys.stderr); sys.argv = ['ketamine-fhir', 'db', 'upgrade']; main()")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFHIR_")} | {
        "PYTHONPATH": str(site), "KFHIR_DATABASE_URL": f"sqlite:///{tmp_path / 'kfhir.db'}"}

    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(str(site / "service"))
    assert f"database at revision {head_revision()}" in result.stdout
