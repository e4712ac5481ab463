"""HAPI FHIR 8.8.0 reference validator (tests/peers/hapi/validator), driven from Python: the oracle our
tests and benchmarks compare against.

    from peers.hapi_validator import validate
    report = validate([Path("patient.json")], ig_dir=Path("profiles/..."))
    report["results"][0]["valid"], report["results"][0]["issues"]

The first call builds the Java harness with Maven (the first build ever downloads HAPI and its dependencies
from Maven Central, then Maven works from ~/.m2). Later calls reuse target/ until pom.xml or src/ change.
Only the standard library is used. Each `validate` call starts one JVM (a few seconds of warm-up), so pass
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

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

HARNESS_DIR = Path(__file__).resolve().parent / "hapi" / "validator"
POM = HARNESS_DIR / "pom.xml"
TARGET = HARNESS_DIR / "target"
CLASSES = TARGET / "classes"
CLASSPATH_FILE = TARGET / "cp.txt"
STAMP = TARGET / ".kfhir-build-stamp"
MAIN_CLASS = "org.ketaminefhir.peer.ValidateMain"

# Heap well under this machine's RAM; override (or add flags) with KFHIR_HAPI_JAVA_OPTS.
DEFAULT_JAVA_OPTS = ("-Xmx1g", "-XX:+UseSerialGC")
BUILD_TIMEOUT_S = 1800
VALIDATE_TIMEOUT_S = 900


class HapiValidatorError(RuntimeError):
    """The harness could not be built or run (not: the resources were invalid)."""


def _tool(name: str, java_home_relative: str | None = None) -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home_relative and java_home:
        candidate = Path(java_home) / java_home_relative
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise HapiValidatorError(f"`{name}` is not on PATH: the HAPI validator harness needs Java 17 and Maven 3.8+")
    return found


def _sources() -> Iterable[Path]:
    yield POM
    yield from (p for p in (HARNESS_DIR / "src").rglob("*") if p.is_file())


def _is_stale() -> bool:
    if not (STAMP.is_file() and CLASSPATH_FILE.is_file() and CLASSES.is_dir()):
        return True
    built = STAMP.stat().st_mtime
    return any(p.stat().st_mtime > built for p in _sources())


def _mvn(*args: str) -> None:
    command = [_tool("mvn"), "-B", "-q", "-f", str(POM), *args]
    proc = subprocess.run(command, cwd=HARNESS_DIR, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                          check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise HapiValidatorError(f"{' '.join(command)} failed (exit {proc.returncode}):\n{tail}")


def build(force: bool = False) -> tuple[Path, str]:
    """Builds the harness unless target/ is newer than pom.xml and src/; returns (classes dir, dependency
    classpath). Safe to call from concurrent processes (a file lock in target/ serialises the builds)."""
    TARGET.mkdir(exist_ok=True)
    with open(TARGET / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or _is_stale():
            STAMP.unlink(missing_ok=True)
            _mvn("package", "-DskipTests")
            _mvn("dependency:build-classpath", f"-Dmdep.outputFile={CLASSPATH_FILE}")
            STAMP.touch()
    return CLASSES, CLASSPATH_FILE.read_text(encoding="utf-8").strip()


def java_command(extra_java_opts: Sequence[str] = ()) -> list[str]:
    """`java -cp … ValidateMain` (builds first if needed); append the harness options and file names."""
    classes, classpath = build()
    opts = list(DEFAULT_JAVA_OPTS) + os.environ.get("KFHIR_HAPI_JAVA_OPTS", "").split() + list(extra_java_opts)
    return [_tool("java", "bin/java"), *opts, "-cp", f"{classes}{os.pathsep}{classpath}", MAIN_CLASS]


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
