"""HAPI FHIR 8.8.0 reference validator (tests/peers/hapi/validator), driven from Python: the oracle our
tests and benchmarks compare against.

    from peers.hapi_validator import validate
    report = validate([Path("patient.json")], ig_dir=Path("profiles/..."))
    report["results"][0]["valid"], report["results"][0]["issues"]

The first call builds the Java harness with Maven (the first build ever downloads HAPI and its dependencies
from Maven Central, then Maven works from ~/.m2). Later calls reuse target/ until pom.xml or src/ change.
Only the standard library is used (and tests/support/maven.py, which builds). Each `validate` call starts one JVM (a few seconds of warm-up), so pass
many files to one call rather than calling once per file.

Output of `validate` (the harness's stdout, parsed):
    {"results": [{"file": str, "valid": bool,
                  "issues": [{"severity": "error|warning|information|fatal", "messageId": str | None,
                              "location": str | None, "expression": str | None, "line": int | None,
                              "col": int | None, "message": str, "downgradedFrom"?: "error"}]}],
     "timing": {"setup_ms", "profile_check_ms", "warmup_ms", "jvm_uptime_at_ready_ms", "per_file_ms": [...],
                "total_ms"},
     "harness": {"hapi_version", "conformance_resources", "snapshot_problems", "unknown_code_system_downgrade"}}
`valid` is False when an issue has severity error or fatal. Unknown code systems (SNOMED CT, LOINC, RxNorm:
there is no terminology server offline) are downgraded to warnings, marked "downgradedFrom"; pass
strict_unknown_code_systems=True to see HAPI's own severities. A file that cannot be read or parsed gets one
"fatal" issue with messageId HARNESS_READ_ERROR or HARNESS_EXCEPTION.
"""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from support.maven import MavenProject

HARNESS_DIR = Path(__file__).resolve().parent / "hapi" / "validator"
MAIN_CLASS = "org.ketaminefhir.peer.ValidateMain"

# Heap well under this machine's RAM; override (or add flags) with KFHIR_HAPI_JAVA_OPTS.
DEFAULT_JAVA_OPTS = ("-Xmx1g", "-XX:+UseSerialGC")
VALIDATE_TIMEOUT_S = 900


class HapiValidatorError(RuntimeError):
    """The harness could not be built or run (not: the resources were invalid)."""


PROJECT = MavenProject(HARNESS_DIR, "the HAPI validator harness", HapiValidatorError)


def _is_stale() -> bool:
    return PROJECT.is_stale()


def build(force: bool = False) -> tuple[Path, str]:
    """Builds the harness unless target/ is newer than pom.xml and src/; returns (classes dir, dependency
    classpath)."""
    return PROJECT.build(force)


def java_command(extra_java_opts: Sequence[str] = ()) -> list[str]:
    """`java -cp … ValidateMain` (builds first if needed); append the harness options and file names."""
    opts = list(DEFAULT_JAVA_OPTS) + os.environ.get("KFHIR_HAPI_JAVA_OPTS", "").split() + list(extra_java_opts)
    return PROJECT.java_command(MAIN_CLASS, opts)


def validate(
    files: Sequence[Path],
    ig_dir: Path | None,
    profile: str | None = None,
    *,
    packages: Sequence[Path] = (),
    strict_unknown_code_systems: bool = False,
    allow_snapshot_problems: bool = False,
    extra_args: Sequence[str] = (),
    timeout: float = VALIDATE_TIMEOUT_S,
) -> dict[str, Any]:
    """Validates `files` (FHIR R4 JSON) in one JVM against the R4 core definitions plus the StructureDefinitions,
    ValueSets and CodeSystems in `ig_dir` (every *.json there, not recursive) and in `packages` (.tgz).
    `profile` forces a profile in addition to any `meta.profile` the resources declare.
    Results come back in the order of `files`, with `file` as given (absolute paths are passed to Java).
    Raises HapiValidatorError when the harness cannot run, e.g. a profile whose snapshot cannot be
    generated (HAPI itself would silently ignore such a profile) unless allow_snapshot_problems."""
    args: list[str] = []
    if ig_dir is not None:
        args += ["--ig", str(Path(ig_dir).resolve())]
    for package in packages:
        args += ["--package", str(Path(package).resolve())]
    if profile:
        args += ["--profile", profile]
    if strict_unknown_code_systems:
        args.append("--strict-unknown-code-systems")
    if allow_snapshot_problems:
        args.append("--allow-snapshot-problems")
    args += [*extra_args, "--stdin-list"]
    given = [str(f) for f in files]
    stdin = "".join(str(Path(f).resolve()) + "\n" for f in given)
    command = java_command() + args
    proc = subprocess.run(command, input=stdin, capture_output=True, text=True, encoding="utf-8",
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-40:])
        raise HapiValidatorError(f"HAPI validator harness exited {proc.returncode}:\n{tail}")
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise HapiValidatorError(f"HAPI validator harness printed no JSON ({exc}); stderr:\n{proc.stderr[-4000:]}") \
            from exc
    report["stderr"] = proc.stderr
    for result, name in zip(report["results"], given, strict=True):
        result["file"] = name
    return report


def errors(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The error and fatal issues of one entry of `validate(...)["results"]`."""
    return [i for i in result["issues"] if i["severity"] in ("error", "fatal")]
