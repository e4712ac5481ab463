"""`ketamine-fhir` run in this process through Click's CliRunner, answered like a finished process.

    done = kfhir("seed-demo", database_url=url, cwd=tmp_path)
    assert done.returncode == 0 and "created" in done.stdout, done.stderr

The command sees this environment without KFHIR_* settings (the tests' own must not leak in), then the
database and the settings named; it runs in `cwd`. An exception the command did not turn into an exit
status is written to `stderr` as the traceback a process would print, so `"Traceback" not in stderr`
means what it means for the console script. The R4 core package and the mapping specifications load once
per test session instead of once per command: that is the whole speed-up."""
from __future__ import annotations

import contextlib
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from service.cli import cli


@dataclass(frozen=True)
class Done:
    """What a finished `ketamine-fhir` leaves: its exit status and its two streams (as subprocess.run does)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def kfhir_env(database_url: str | None = None, **settings: str) -> dict[str, str | None]:
    """For CliRunner.invoke: every KFHIR_* variable of this process unset, then the database and `settings`."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KFHIR_")}
    if database_url is not None:
        env["KFHIR_DATABASE_URL"] = database_url
    return env | settings


def kfhir(*args: str | Path, database_url: str | None = None, cwd: Path | None = None, stdin: str | None = None,
          **settings: str) -> Done:
    """Run `ketamine-fhir ARGS` in-process; `stdin` is what prompts and --password-stdin read."""
    argv = [str(a) for a in args]
    with contextlib.chdir(cwd or Path.cwd()):
        result = CliRunner().invoke(cli, argv, input=stdin, env=kfhir_env(database_url, **settings),
                                    prog_name="ketamine-fhir")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))  # "Traceback (most recent call last):"…
    return Done(argv, result.exit_code, result.stdout, stderr)
