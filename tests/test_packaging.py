"""A plain (non-editable) wheel of the project carries every package, the data files and the console script it
needs, and installed into a fresh venv (no source tree on the path) it migrates, serves and validates."""
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
import requests
from packaging.requirements import Requirement
from support.serving import free_port, wait_until_answers

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
    "service/security/tokens.py",
]
#: a fresh install resolves every dependency (from pip's cache when it holds them): minutes on a busy machine
INSTALL_TIMEOUT_S = 600


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


def test_the_wheel_holds_every_package_of_the_source_tree(wheel: Path) -> None:
    """Every folder of service/ with Python modules in it is in the wheel (a hand-written list once forgot one)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "service").rglob("*.py")
                if "__pycache__" not in p.parts}

    assert sorted(p for p in packages if f"{p}/__init__.py" not in names) == []


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


@pytest.mark.install
def test_the_wheel_in_a_fresh_venv_migrates_serves_and_validates(wheel: Path, tmp_path: Path) -> None:
    """The user's way: `pip install ketamine_fhir-*.whl` into a new venv, then the README's commands, run away from
    the checkout with nothing of it on the path (the editable install once hid a package missing from the wheel)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python, kfhir = venv / "bin" / "python", venv / "bin" / "ketamine-fhir"
    # this pip installs into the new venv (--python): no ensurepip, and pip's cache is the one the dev venv filled
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                                str(wheel)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KFHIR_", "PYTHON"))} | {
        "KFHIR_DATABASE_URL": f"sqlite:///{tmp_path / 'kfhir.db'}"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    where = run(str(python), "-c", "import service; print(service.__file__)")
    upgraded = run(str(kfhir), "db", "upgrade")
    example = Path(where.stdout.strip()).parent / "profiles" / "examples" / "Patient-demo-alpha.json"
    validated = run(str(kfhir), "validate", str(example))

    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    assert upgraded.returncode == 0 and f"database at revision {head_revision()}" in upgraded.stdout, upgraded.stderr
    assert validated.returncode == 0, validated.stdout + validated.stderr
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen([str(kfhir), "serve", "--port", str(port)], env=env, cwd=tmp_path, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/health", server, log)
        answer = requests.get(f"http://127.0.0.1:{port}/fhir/Patient", timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert answer.status_code == 401  # the service's security came with the wheel: deny by default
