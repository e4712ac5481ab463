"""The serving part's load generator: the Go one (bench/loadgen, built once), or bench/load.py when Go is absent.

Both take the same arguments and print the same JSON (bench/load.py's docstring). The Go one is preferred because
the generator shares the 2 cores with the server it measures: Python threads under the GIL took 12–27 % of the
machine and their latencies held each thread's wait for the GIL, inflating every contender's p50 and p99.

The binary is built with the standard library only (GOPROXY=off, GOTOOLCHAIN=local: nothing is fetched) into
bench/loadgen/target/, named by a hash of its source and of `go version`, so a changed source or toolchain builds
anew and an unchanged one is built once for every run and contender."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "loadgen"
TARGET = SOURCE / "target"
GO_FALLBACK = Path("/usr/local/go/bin/go")  # where the machine's Go lives when it is not on PATH
PYTHON = [sys.executable, "-m", "bench.load"]


@dataclass(frozen=True)
class Generator:
    command: list[str]  # the program; the arguments of bench/load.py follow
    kind: str  # "go" or "python"
    says: str  # for the report's configuration line


def go_binary() -> str | None:
    found = shutil.which("go")
    return found or (str(GO_FALLBACK) if GO_FALLBACK.is_file() else None)


def python(reason: str) -> Generator:
    return Generator(PYTHON, "python", f"Python threads (bench/load.py, requests, one keep-alive connection each; "
                                       f"{reason})")


def build(go: str, target: Path = TARGET, source: Path = SOURCE) -> Path:
    """The binary for this source and toolchain, built when it is not there yet; raises RuntimeError when the build
    fails."""
    env = dict(os.environ) | {"GOPROXY": "off", "GOTOOLCHAIN": "local", "GOFLAGS": "", "GOWORK": "off",
                              "CGO_ENABLED": "0"}
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True, env=env,  # noqa: S603
                             timeout=60).stdout.strip()
    digest = hashlib.sha256(version.encode())
    # every file the binary is built from (its tests are not): a change to any builds it anew
    for path in [source / "go.mod", *sorted(p for p in source.glob("*.go") if not p.name.endswith("_test.go"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    binary = target / f"loadgen-{digest.hexdigest()[:16]}"
    if binary.is_file():
        return binary
    target.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}.partial")  # renamed once whole: runs may race
    if "GOCACHE" not in env and "HOME" not in env and "XDG_CACHE_HOME" not in env:
        env["GOCACHE"] = str(target / "gocache")
    done = subprocess.run([go, "build", "-trimpath", "-o", str(partial), "."], cwd=source, env=env,  # noqa: S603
                          capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"go build failed: {' '.join(done.stderr.split())[-300:]}")
    partial.replace(binary)
    return binary


def choose(kind: str = "go") -> Generator:
    """The generator for a run: the Go one unless `kind` is "python" or Go is absent or fails to build."""
    if kind == "python":
        return python("chosen with --load-generator python")
    go = go_binary()
    if go is None:
        return python("go is not installed, so the Go generator could not be built")
    try:
        binary = build(go)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return python(f"the Go generator could not be built: {str(exc)[:200]}")
    return Generator([str(binary)], "go", "Go (bench/loadgen: a goroutine per client, each with its own keep-alive "
                                          "connection)")
