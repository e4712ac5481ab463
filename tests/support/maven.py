"""The Java projects of tests/peers/hapi (the HAPI FHIR validator harness and JPA server), built with Maven on
first use and again only when pom.xml or src/ change; the JDK's tools found on JAVA_HOME or PATH.

Standard library only: bench/ loads the peers by file path, outside pytest."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

BUILD_TIMEOUT_S = 1800


class BuildError(RuntimeError):
    """A tool is missing or Maven failed; the message says which and ends with Maven's last lines."""


def tool(name: str, java_home_relative: str | None = None, needed_for: str = "the HAPI FHIR peers",
         error: type[RuntimeError] = BuildError) -> str:
    """`name` under JAVA_HOME (when `java_home_relative` is given and there) or on PATH; else `error`."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home_relative and java_home:
        candidate = Path(java_home) / java_home_relative
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise error(f"`{name}` is not on PATH: {needed_for} need Java 17 and Maven 3.8+")
    return found


@dataclass(frozen=True)
class MavenProject:
    """A Maven project whose classes and dependency classpath the tests run with `java -cp`. Failures raise
    `error` (the peer's own exception type, which its callers catch)."""

    folder: Path
    needed_for: str = "the HAPI FHIR peers"
    error: type[RuntimeError] = BuildError

    @property
    def pom(self) -> Path:
        return self.folder / "pom.xml"

    @property
    def target(self) -> Path:
        return self.folder / "target"

    @property
    def classes(self) -> Path:
        return self.target / "classes"

    @property
    def classpath_file(self) -> Path:
        return self.target / "cp.txt"

    @property
    def stamp(self) -> Path:
        return self.target / ".kfhir-build-stamp"

    def _sources(self) -> Iterable[Path]:
        yield self.pom
        yield from (p for p in (self.folder / "src").rglob("*") if p.is_file())

    def is_stale(self) -> bool:
        if not (self.stamp.is_file() and self.classpath_file.is_file() and self.classes.is_dir()):
            return True
        built = self.stamp.stat().st_mtime
        return any(p.stat().st_mtime > built for p in self._sources())

    def mvn(self, *args: str) -> None:
        command = [tool("mvn", None, self.needed_for, self.error), "-B", "-q", "-f", str(self.pom), *args]
        proc = subprocess.run(command, cwd=self.folder, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                              check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise self.error(f"{' '.join(command)} failed (exit {proc.returncode}):\n{tail}")

    def build(self, force: bool = False) -> tuple[Path, str]:
        """Builds unless target/ is newer than pom.xml and src/; returns (classes dir, dependency classpath).
        Safe from concurrent processes (pytest-xdist workers): a file lock in target/ serialises the builds."""
        self.target.mkdir(exist_ok=True)
        with open(self.target / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if force or self.is_stale():
                self.stamp.unlink(missing_ok=True)
                self.mvn("package", "-DskipTests")
                self.mvn("dependency:build-classpath", f"-Dmdep.outputFile={self.classpath_file}")
                self.stamp.touch()
        return self.classes, self.classpath_file.read_text(encoding="utf-8").strip()

    def java_command(self, main_class: str, java_opts: Iterable[str]) -> list[str]:
        """`java OPTS -cp CLASSES:DEPENDENCIES MAIN` (built first if needed); append the program's arguments."""
        classes, classpath = self.build()
        return [tool("java", "bin/java", self.needed_for, self.error), *java_opts, "-cp", f"{classes}{os.pathsep}{classpath}",
                main_class]
