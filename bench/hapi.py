"""HAPI FHIR 8.8.0 for the benchmarks: `bench_command` (the compare part: bench/java/BenchMain.java under the
protocol of bench/protocol.py, as every other contender) and `run` (`python -m bench.validation` without
--no-hapi: the tests' harness, tests/peers/hapi_validator.py, over the same files in one JVM, for its verdicts
on the mutations; `make bench` no longer times HAPI this way, see bench/README.md).

`run`: the file list is given `passes` times: the harness's own warm-up is two small resources, and our profiles'
snapshots are generated lazily on first use, so the first pass still includes JIT compilation and snapshot
generation. The figures "after warm-up" are those of the last pass; the first pass is reported beside them.
per_file_ms is timed inside the JVM around read + parse + validate of each file (ValidateMain.validateFile).

We run `java_command()` ourselves (not hapi_validator.validate) to get the JVM's peak RSS: os.wait4 returns
the child's ru_maxrss, and /proc/<pid>/status VmHWM is polled as a cross-check."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.peers import hapi_module


def _vmhwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def run(files: list[Path], ig_dir: Path, passes: int, timeout: float = 900) -> dict[str, Any]:
    """The harness's report plus our measurements; {"status": "not run: ..."} when it cannot run."""
    try:
        hv = hapi_module()
    except Exception as exc:  # noqa: BLE001 - any failure to load the harness module is "not run"
        return {"status": f"not run: cannot load tests/peers/hapi_validator.py ({exc})"}
    t0 = time.perf_counter()
    try:
        stale = hv._is_stale() if hasattr(hv, "_is_stale") else None
        command = hv.java_command()  # builds the harness with Maven when target/ is stale
    except (hv.HapiValidatorError, OSError, subprocess.SubprocessError) as exc:
        return {"status": f"not run: harness cannot be built ({str(exc).strip().splitlines()[0]})",
                "detail": str(exc)[-4000:]}
    build_s = time.perf_counter() - t0
    command += ["--ig", str(ig_dir.resolve()), "--stdin-list"]
    listed = [str(f.resolve()) for f in files] * passes

    with tempfile.TemporaryDirectory(prefix="kfhir-bench-hapi-") as tmp:
        stdin_path, out_path, err_path = (Path(tmp) / n for n in ("files.txt", "out.json", "err.txt"))
        stdin_path.write_text("".join(f + "\n" for f in listed), encoding="utf-8")
        with open(stdin_path, "rb") as stdin, open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.perf_counter()
            try:
                proc = subprocess.Popen(command, stdin=stdin, stdout=out, stderr=err)  # noqa: S603 - our own java command
            except OSError as exc:
                return {"status": f"not run: cannot start java ({exc})"}
            polled: int | None = None
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                polled = _vmhwm_kib(proc.pid) or polled
                if time.perf_counter() - start > timeout:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    return {"status": f"not run: harness timed out after {timeout:.0f} s"}
                time.sleep(0.05)
            wall_s = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = err_path.read_text(encoding="utf-8", errors="replace")
        if proc.returncode != 0:
            tail = "\n".join(stderr.splitlines()[-20:])
            return {"status": f"not run: harness exited {proc.returncode}", "detail": tail}
        try:
            report: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            return {"status": f"not run: harness printed no JSON ({exc})", "detail": stderr[-4000:]}

    n = len(files)
    timing = report["timing"]
    per_file = timing["per_file_ms"]
    results = report["results"]
    last = slice((passes - 1) * n, passes * n)
    verdicts = [not r["valid"] for r in results[last]]
    unstable = [files[i].name for i in range(n) if any((not results[k * n + i]["valid"]) != verdicts[i]
                                                        for k in range(passes))]
    return {
        "status": "ran",
        "command": command[:1] + [a for a in command[1:] if a.startswith("-X")] + ["…", hv.MAIN_CLASS],
        "harness_build": {"was_stale": stale, "seconds": build_s},
        "hapi_version": report["harness"]["hapi_version"],
        "snapshot_problems": report["harness"]["snapshot_problems"],
        "passes": passes,
        "files": n,
        "setup_ms": timing["setup_ms"],
        "profile_check_ms": timing["profile_check_ms"],
        "warmup_ms": timing["warmup_ms"],
        "jvm_uptime_at_ready_ms": timing["jvm_uptime_at_ready_ms"],
        "total_ms": timing["total_ms"],
        "jvm_uptime_after_first_pass_ms": timing["jvm_uptime_at_ready_ms"] + sum(per_file[:n]),
        "process_wall_s": wall_s,
        "peak_rss_ru_maxrss_kib": usage.ru_maxrss,
        "peak_rss_vmhwm_polled_kib": polled,
        "per_file_ms_by_pass": [per_file[k * n:(k + 1) * n] for k in range(passes)],
        "per_file_ms": per_file[last],
        "errors": verdicts,
        "error_messages": [[f"{i.get('location')}: {i['message']}" for i in r["issues"]
                            if i["severity"] in ("error", "fatal")][:5] for r in results[last]],
        "verdict_changed_between_passes": unstable,
    }


BENCH_MAIN = Path(__file__).resolve().parent / "java" / "BenchMain.java"
BENCH_CLASSES = BENCH_MAIN.parent / "target"
# The heap is the one flag: the validator needs well under 1 GB, and the JVM's default (a quarter of RAM) would
# make its peak RSS a matter of how lazily it collects. No GC flag (the JVM's default for one CPU) and no
# -XX:TieredStopAtLevel: C1 then C2, as a user's JVM runs.
BENCH_JAVA_OPTS = ("-Xmx1g",)


def bench_command(manifest: Path) -> list[str] | str:
    """`java … BenchMain MANIFEST` (bench/java/BenchMain.java, compiled with javac against the tests' harness when
    stale), or why it cannot run."""
    try:
        hv = hapi_module()
        classes, classpath = hv.build()
    except Exception as exc:  # noqa: BLE001 - any failure to load or build the harness is "not run"
        return f"the HAPI harness cannot be built ({str(exc).strip().splitlines()[0][:200]})"
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        return "javac or java is not on PATH"
    compiled = BENCH_CLASSES / "org" / "ketaminefhir" / "peer" / "BenchMain.class"
    cp = f"{classes}{os.pathsep}{classpath}"
    if not compiled.is_file() or compiled.stat().st_mtime < BENCH_MAIN.stat().st_mtime:
        done = subprocess.run([javac, "-nowarn", "-d", str(BENCH_CLASSES), "-cp", cp, str(BENCH_MAIN)],  # noqa: S603
                              capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            return f"javac BenchMain.java failed: {done.stderr.strip()[-300:]}"
    return [java, *BENCH_JAVA_OPTS, "-cp", f"{BENCH_CLASSES}{os.pathsep}{cp}", "org.ketaminefhir.peer.BenchMain",
            str(manifest)]
