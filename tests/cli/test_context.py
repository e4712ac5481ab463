"""What every command shares (service/cli/context.py): settings from KFHIR_*, a migrated database, and an
invocation that leaves nothing behind in the process that ran it."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from cli.support import kfhir
from factories import assessment
from support.serving import free_port


@pytest.mark.parametrize(("variable", "value"), [
    ("KFHIR_LOG_LEVEL", "LOUD"),
    ("KFHIR_PORT", "eighty"),
    ("KFHIR_PAGE_SIZE", "0"),
    ("KFHIR_DATABASE_URL", "mysql://db.example/kfhir"),
])
def test_a_bad_setting_exits_2_with_a_message_naming_the_variable(variable: str, value: str, tmp_path: Path) -> None:
    result = kfhir("db", "upgrade", database_url=f"sqlite:///{tmp_path / 'kfhir.db'}", cwd=tmp_path,
                   **{variable: value})

    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "kfhir.db").exists()


def test_an_endpoints_file_that_cannot_be_read_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = kfhir("db", "upgrade", database_url=f"sqlite:///{tmp_path / 'kfhir.db'}", cwd=tmp_path,
                   KFHIR_ENDPOINTS_FILE=str(tmp_path / "absent.yaml"))

    assert (result.returncode, "Traceback" in result.stderr) == (2, False), result.stderr
    assert "KFHIR_ENDPOINTS_FILE" in result.stderr


COMMANDS = {
    "seed-demo": ["seed-demo"],
    "import": ["import", "{file}", "--kind", "assessment"],
    "serve": ["serve", "--port", "{port}"],
}


@pytest.mark.parametrize("command", list(COMMANDS.values()), ids=list(COMMANDS))
def test_every_command_rejects_a_bad_setting_with_exit_2(command: list[str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def serving(*args: object, **kwargs: object) -> None:
        pytest.fail("serve started despite the bad setting")

    monkeypatch.setattr("werkzeug.serving.run_simple", serving)  # in-process, a server would never return
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps(assessment()) + "\n")
    args = [a.format(file=records, port=free_port()) for a in command]

    result = kfhir(*args, database_url=f"sqlite:///{tmp_path / 'kfhir.db'}", cwd=tmp_path, KFHIR_LOG_LEVEL="LOUD")

    assert (result.returncode, "Traceback" in result.stderr) == (2, False), result.stderr
    assert "KFHIR_LOG_LEVEL" in result.stderr


@pytest.mark.parametrize("command", [["seed-demo"], ["import", "records.jsonl", "--kind", "assessment"]])
def test_commands_on_an_unmigrated_database_say_to_upgrade_and_leak_nothing(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "records.jsonl").write_text(json.dumps(assessment()) + "\n")
    result = kfhir(*command, database_url=f"sqlite:///{tmp_path / 'new.db'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "ketamine-fhir db upgrade" in result.stderr
    assert "Traceback" not in result.stderr and "MRN-001" not in result.stderr + result.stdout


def test_unreachable_database_is_a_one_line_error(tmp_path: Path) -> None:
    result = kfhir("seed-demo", database_url="postgresql://nobody@127.0.0.1:1/none", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: cannot reach the database: OperationalError"


def test_an_invocation_puts_the_logging_it_configured_back(database_url: str, tmp_path: Path) -> None:
    """In-process (a test, a script) the JSON log handler and levels a command sets last only as long as it."""
    loggers = [logging.getLogger(name) for name in ("", "alembic", "sqlalchemy.engine", "werkzeug")]
    before = [(lg.level, list(lg.handlers), list(lg.filters)) for lg in loggers]

    result = kfhir("clients", "list", database_url=database_url, cwd=tmp_path, KFHIR_LOG_LEVEL="DEBUG")

    assert result.returncode == 0, result.stderr
    assert [(lg.level, list(lg.handlers), list(lg.filters)) for lg in loggers] == before
