"""`ketamine-fhir admin …`: accounts made from the command line, as an operator or a script would."""
from __future__ import annotations

import subprocess
from pathlib import Path

from admin.support import PASSWORD
from cli.support import kfhir

from service.admin.accounts import Accounts
from service.store.engine import make_engine


def _signs_in(database_url: str, username: str, password: str) -> bool:
    engine = make_engine(database_url)
    try:
        return Accounts(engine).sign_in(username, password).ok
    finally:
        engine.dispose()


def test_create_user_reads_the_password_from_stdin_for_scripts(database_url: str, tmp_path: Path) -> None:
    result = kfhir("admin", "create-user", "Alice", "--password-stdin", database_url=database_url, cwd=tmp_path,
                   stdin=PASSWORD + "\n")

    assert result.returncode == 0, result.stderr
    assert "admin account 'alice' created" in result.stdout
    assert _signs_in(database_url, "alice", PASSWORD)
    listed = kfhir("admin", "list-users", database_url=database_url, cwd=tmp_path)
    assert listed.stdout.split() == ["alice"]


def test_create_user_prompts_twice_and_insists_on_a_match(database_url: str, tmp_path: Path) -> None:
    typed = f"{PASSWORD}\nsomething else entirely\n{PASSWORD}\n{PASSWORD}\n"

    result = kfhir("admin", "create-user", "bob", database_url=database_url, cwd=tmp_path, stdin=typed)

    assert result.returncode == 0, result.stderr
    assert "The two entered values do not match." in result.stdout
    # the prompts: on stderr from a process without a terminal (getpass), on stdout in CliRunner
    assert (result.stdout + result.stderr).count("Repeat the password") == 2
    assert _signs_in(database_url, "bob", PASSWORD)


def test_a_weak_password_or_a_taken_name_is_a_usage_error(database_url: str, tmp_path: Path) -> None:
    weak = kfhir("admin", "create-user", "carol", "--password-stdin", database_url=database_url, cwd=tmp_path,
                 stdin="short\n")
    assert (weak.returncode, "at least 12 characters" in weak.stderr) == (2, True)
    kfhir("admin", "create-user", "carol", "--password-stdin", database_url=database_url, cwd=tmp_path,
          stdin=PASSWORD + "\n")
    again = kfhir("admin", "create-user", "carol", "--password-stdin", database_url=database_url, cwd=tmp_path,
                  stdin=PASSWORD + "\n")
    assert (again.returncode, "exists already" in again.stderr) == (2, True)


def test_set_password_and_unlock(database_url: str, tmp_path: Path) -> None:
    kfhir("admin", "create-user", "dave", "--password-stdin", database_url=database_url, cwd=tmp_path,
          stdin=PASSWORD + "\n")

    changed = kfhir("admin", "set-password", "dave", "--password-stdin", database_url=database_url, cwd=tmp_path,
                    stdin=PASSWORD + " two\n")
    unlocked = kfhir("admin", "unlock", "dave", database_url=database_url, cwd=tmp_path)

    assert changed.returncode == 0 and unlocked.returncode == 0
    assert _signs_in(database_url, "dave", PASSWORD + " two")


def test_demo_user_is_made_once_with_a_random_password_printed_once(database_url: str, tmp_path: Path) -> None:
    first = kfhir("admin", "demo-user", database_url=database_url, cwd=tmp_path)
    second = kfhir("admin", "demo-user", database_url=database_url, cwd=tmp_path)

    password = first.stdout.split("with password ", 1)[1].split()[0]
    assert first.returncode == 0 and _signs_in(database_url, "admin", password)
    assert second.returncode == 0 and password not in second.stdout and "nothing changed" in second.stdout


def test_admin_commands_need_a_migrated_database(tmp_path: Path) -> None:
    result = kfhir("admin", "list-users", database_url=f"sqlite:///{tmp_path / 'new.db'}", cwd=tmp_path)

    assert result.returncode == 2 and "db upgrade" in result.stderr


def test_make_run_creates_the_demo_admin_after_migrating_and_before_serving() -> None:
    """`make run` (README): the demo admin exists on first run, its password printed by `admin demo-user`."""
    root = Path(__file__).resolve().parents[2]
    planned = subprocess.run(["make", "-n", "-C", str(root), "run"], capture_output=True, text=True, timeout=60,
                             check=True).stdout.splitlines()
    steps = [line.split("ketamine-fhir ", 1)[1] for line in planned if "ketamine-fhir " in line]

    assert steps.index("db upgrade") < steps.index("admin demo-user") < steps.index("serve")
