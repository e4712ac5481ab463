"""Runs each contender on the corpus of bench/bundles.py, each in its own process.

Python contenders run bench/child.py pinned to one core; Medplum runs bench/medplum/validate.mjs under Node;
HAPI runs the harness of tests/peers (bench/hapi.py) in one JVM. Every process gets the same files, warms up
on the single resources and the smallest Bundle, then times each file at least `min_reps` times and
`min_time_s` seconds. Peak RSS is the child's ru_maxrss from os.wait4. A contender that cannot run is
returned as {"status": "not run: why"}, never dropped."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import hapi, stats
from bench.bundles import File

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MEDPLUM = BENCH / "medplum"
FHIRCRAFT_PY = BENCH / "fhircraft" / ".venv" / "bin" / "python"
TIMEOUT_S = 900
SLOW_FILE_S = 60  # fhircraft: past this, two calls of a file are enough (bench/child.py _timed)


@dataclass
class Plan:
    files: list[File]
    profiles: list[str]  # our StructureDefinition files
    ig_dir: Path  # our conformance resources, for HAPI's --ig
    min_reps: int
    min_time_s: float
    slow_reps: int  # HAPI and fhircraft: reps of each file (tens of ms per resource)

    def warmup(self) -> list[int]:
        smallest = min((f.entries for f in self.files if f.kind == "bundle"), default=0)
        return [i for i, f in enumerate(self.files)
                if f.kind == "valid" or (f.kind == "bundle" and f.entries == smallest)]


CONTENDERS = ("ours", "hapi", "medplum", "fhircraft", "fhir.resources", "json.loads")
LABELS = {"ours": "ours (ketamine-fhir)", "hapi": "HAPI FHIR 8.8.0", "medplum": "Medplum", "fhircraft": "fhircraft",
          "fhir.resources": "fhir.resources model_validate", "json.loads": "json.loads (parse floor)"}


def _command(name: str, manifest: Path) -> list[str] | str:
    """The child's command line, or why it cannot run."""
    child = str(BENCH / "child.py")
    if name == "medplum":
        node = shutil.which("node")
        if node is None:
            return "node is not on PATH"
        if not (MEDPLUM / "node_modules" / "@medplum" / "core").is_dir():
            return "@medplum/core not installed (make bench runs npm ci in bench/medplum)"
        return [node, str(MEDPLUM / "validate.mjs"), str(manifest)]
    if name == "fhircraft":
        if not FHIRCRAFT_PY.is_file():
            return "no bench/fhircraft/.venv (make bench installs bench/fhircraft/requirements.txt there)"
        return [str(FHIRCRAFT_PY), child, name, str(manifest)]
    return [sys.executable, child, name, str(manifest)]


def _spawn(command: list[str], manifest: dict[str, Any], folder: Path, cwd: Path) -> dict[str, Any]:
    manifest_path, out_path, err_path = folder / "manifest.json", folder / "out.json", folder / "err.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        spawn_ns = time.monotonic_ns()
        manifest_path.write_text(json.dumps(manifest | {"spawn_ns": spawn_ns}), encoding="utf-8")
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd, env=env)  # noqa: S603 - our own scripts
        polled = None
        while True:
            pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            polled = hapi._vmhwm_kib(proc.pid) or polled
            if time.perf_counter() - started > TIMEOUT_S:
                proc.kill()
                os.wait4(proc.pid, 0)
                return {"status": f"not run: timed out after {TIMEOUT_S} s"}
            time.sleep(0.02)
    code = os.waitstatus_to_exitcode(status)
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        last = [line for line in stderr.splitlines() if line.strip()][-1:] or ["(no stderr)"]
        return {"status": f"not run: exited {code} ({last[0][:200]})", "stderr": stderr[-3000:]}
    report: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    # The child's own VmHWM at its end; the polled one covers a child that cannot read it.
    report.update(status="ran", spawn_ns=spawn_ns, wall_s=time.perf_counter() - started,
                  peak_rss_kib=max(report.get("peak_rss_kib") or 0, polled or 0) or None)
    report["startup_ms"] = (int(report["first_result_ns"]) - spawn_ns) / 1e6
    report["load_ms"] = (int(report["loaded_ns"]) - spawn_ns) / 1e6
    return report


def run_child(name: str, plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"kfhir-bench-{name}-") as tmp:
        command = _command(name, Path(tmp) / "manifest.json")
        if isinstance(command, str):
            return {"status": f"not run: {command}"}
        slow = name == "fhircraft"
        manifest = {"profiles": plan.profiles, "files": [f.to_json() for f in plan.files], "warmup": plan.warmup(),
                    "min_reps": plan.slow_reps if slow else plan.min_reps, "min_time_s": plan.min_time_s,
                    "max_time_s": SLOW_FILE_S if slow else None}
        return _spawn(command, manifest, Path(tmp), MEDPLUM if name == "medplum" else ROOT)


def _summary(times_ns: list[float]) -> dict[str, Any]:
    """The children's per-file summary (bench/child.py summary) of HAPI's times."""
    return {"calls": len(times_ns), "median_ns": stats.median(times_ns), "p95_ns": stats.p95(times_ns)}


def run_hapi(plan: Plan) -> dict[str, Any]:
    """The harness over warm-up files then every file `slow_reps` times, in one JVM; the per-file times are
    timed inside the JVM (read + parse + validate), after the warm-up."""
    warm = plan.warmup()
    n, reps = len(plan.files), plan.slow_reps
    listed = [Path(plan.files[i].path) for i in warm] + [Path(f.path) for f in plan.files] * reps
    out = hapi.run(listed, plan.ig_dir, 1, timeout=TIMEOUT_S)
    if out["status"] != "ran":
        return out
    times, w = out["per_file_ms"], len(warm)
    last = w + (reps - 1) * n  # verdicts of the last repetition
    results = [{**_summary([times[w + r * n + i] * 1e6 for r in range(reps)]), "errors": out["errors"][last + i],
                "messages": out["error_messages"][last + i]} for i in range(n)]
    return {"status": "ran", "contender": f"HAPI FHIR {out['hapi_version']} (instance validator)",
            "profiles": "the IG's StructureDefinitions, ValueSets, CodeSystems (--ig)",
            "startup_ms": out["jvm_uptime_at_ready_ms"] + times[0], "load_ms": out["jvm_uptime_at_ready_ms"],
            "startup_note": "JVM uptime at ready (includes the harness's own 2-resource warm-up) + first file",
            "peak_rss_kib": out["peak_rss_vmhwm_polled_kib"] or out["peak_rss_ru_maxrss_kib"],
            "wall_s": out["process_wall_s"],
            "snapshot_problems": out["snapshot_problems"], "results": results}


def run(plan: Plan, chosen: list[str], skipped: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every contender in CONTENDERS order: measured, or {"status": "not run: why"}."""
    out: dict[str, dict[str, Any]] = {}
    for name in CONTENDERS:
        if name in skipped:
            out[name] = {"status": f"not run: {skipped[name]}"}
        elif name not in chosen:
            out[name] = {"status": "not run: not chosen (--only)"}
        else:
            print(f"contenders: {name}…", file=sys.stderr, flush=True)
            try:
                out[name] = run_hapi(plan) if name == "hapi" else run_child(name, plan)
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                out[name] = {"status": f"not run: {type(exc).__name__}: {str(exc)[:200]}"}
        out[name].setdefault("contender", LABELS[name])
    return out
