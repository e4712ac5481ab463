"""Runs each contender on the corpus of bench/bundles.py, each in its own process, under bench/protocol.py.

Python contenders run bench/child.py; Medplum runs bench/medplum/validate.mjs under Node, twice (as shipped, and
with each profile parsed once); HAPI runs bench/java/BenchMain.java in one JVM (C2 and the JVM's default GC for
what it sees: no -XX flag but the heap). Every process is pinned before exec to the same single core
(os.sched_setaffinity in the child between fork and exec, as `taskset -c N` does), so the JVM, Node and Python
all see one CPU; gets the same files and the same protocol settings; and reports its warm-up passes, from which
the parent computes when it was steady, its calls of each file, and its calls of the valid singles in rotation
(bench/protocol.py). Peak RSS is the child's VmHWM. A contender that cannot run is returned
as {"status": "not run: why"}, never dropped."""
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

from bench import hapi, protocol
from bench.bundles import File

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MEDPLUM = BENCH / "medplum"
FHIRCRAFT_PY = BENCH / "fhircraft" / ".venv" / "bin" / "python"
TIMEOUT_S = 900


@dataclass
class Plan:
    files: list[File]
    profiles: list[str]  # our StructureDefinition files
    ig_dir: Path  # our conformance resources, for HAPI
    settings: protocol.Settings

    def warmup(self) -> list[int]:
        smallest = min((f.entries for f in self.files if f.kind == "bundle"), default=0)
        return [i for i, f in enumerate(self.files)
                if f.kind in ("valid", "invalid") or (f.kind == "bundle" and f.entries == smallest)]

    def rotation(self) -> list[int]:
        """The valid singles in the order the Bundles cycle through them (bench/bundles.py): timed in rotation."""
        return [i for i, f in enumerate(self.files) if f.kind == "valid"]

    def pairs(self) -> list[dict[str, Any]]:
        """Each Bundle with the singles of its entries in its order (the rotation cycled): timed in pairs (rule 4)."""
        order = self.rotation()
        return [{"bundle": i, "singles": [order[k % len(order)] for k in range(f.entries)]}
                for i, f in enumerate(self.files) if f.kind == "bundle" and order]


CONTENDERS = ("ours", "hapi", "medplum", "medplum-parsed", "fhircraft", "fhir.resources", "json.loads")
LABELS = {"ours": "ours (ketamine-fhir)", "hapi": "HAPI FHIR 8.8.0", "medplum": "Medplum, as shipped",
          "medplum-parsed": "Medplum, profile parsed once", "fhircraft": "fhircraft",
          "fhir.resources": "fhir.resources model_validate", "json.loads": "json.loads (parse floor)"}
# What each contender checks, so that a fast row that checks less reads as such (bench/README.md has the why).
CHECKS = {
    "ours": "structure, cardinality, FHIRPath invariants, slicing, bindings to the IG's value sets (terminology)",
    "hapi": "structure, cardinality, FHIRPath invariants, slicing, terminology (IG + R4 value sets, in memory)",
    "medplum": "structure, cardinality, FHIRPath invariants, slicing; no terminology",
    "medplum-parsed": "as Medplum as shipped: structure, cardinality, invariants, slicing; no terminology",
    "fhircraft": "structure, cardinality, invariants (pydantic models of the profiles it accepts); no terminology",
    "fhir.resources": "R4B structure and types only; no profile, no invariants, no terminology",
    "json.loads": "JSON syntax only",
}


PROFILES = {"ours": "the IG package, as the service loads it",
            "hapi": "the IG's StructureDefinitions, ValueSets, CodeSystems (as the tests' harness loads them)"}


def core() -> int:
    """The one core every contender is pinned to: the last this process may run on."""
    return max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0


def _pin(cpu: int) -> Any:
    def pin() -> None:  # runs in the child between fork and exec, as taskset does
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {cpu})
    return pin


def _command(name: str, manifest: Path) -> list[str] | str:
    """The child's command line, or why it cannot run."""
    child = str(BENCH / "child.py")
    if name in ("medplum", "medplum-parsed"):
        node = shutil.which("node")
        if node is None:
            return "node is not on PATH"
        if not (MEDPLUM / "node_modules" / "@medplum" / "core").is_dir():
            return "@medplum/core not installed (make bench runs npm ci in bench/medplum)"
        return [node, str(MEDPLUM / "validate.mjs"), str(manifest), "parsed-once" if name == "medplum-parsed"
                else "shipped"]
    if name == "hapi":
        return hapi.bench_command(manifest)
    if name == "fhircraft":
        if not FHIRCRAFT_PY.is_file():
            return "no bench/fhircraft/.venv (make bench installs bench/fhircraft/requirements.txt there)"
        return [str(FHIRCRAFT_PY), child, name, str(manifest)]
    return [sys.executable, child, name, str(manifest)]


def _spawn(command: list[str], manifest: dict[str, Any], folder: Path, cwd: Path, cpu: int) -> dict[str, Any]:
    manifest_path, out_path, err_path = folder / "manifest.json", folder / "out.json", folder / "err.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        spawn_ns = time.monotonic_ns()
        manifest_path.write_text(json.dumps(manifest | {"spawn_ns": spawn_ns}), encoding="utf-8")
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd, env=env,  # noqa: S603 - our own
                                preexec_fn=_pin(cpu))  # noqa: PLW1509 - no threads in the parent
        polled = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            polled = hapi._vmhwm_kib(proc.pid) or polled
            if time.perf_counter() - started > TIMEOUT_S:
                proc.kill()
                proc.returncode = os.waitstatus_to_exitcode(os.wait4(proc.pid, 0)[1])
                return {"status": f"not run: timed out after {TIMEOUT_S} s"}
            time.sleep(0.02)
    code = proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait again
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        last = [line for line in stderr.splitlines() if line.strip()][-1:] or ["(no stderr)"]
        return {"status": f"not run: exited {code} ({last[0][:200]})", "stderr": stderr[-3000:]}
    report: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    # The child's own VmHWM at its end; the polled one covers a child that cannot read it.
    # its CPU time beside the wall time: pinned to one core, it is what the wall time would be on an idle machine
    report.update(status="ran", spawn_ns=spawn_ns, wall_s=time.perf_counter() - started,
                  cpu_s=usage.ru_utime + usage.ru_stime,
                  peak_rss_kib=max(report.get("peak_rss_kib") or 0, polled or 0) or None)
    report["startup_ms"] = (int(report["first_result_ns"]) - spawn_ns) / 1e6
    report["load_ms"] = (int(report["loaded_ns"]) - spawn_ns) / 1e6
    return report


def run_child(name: str, plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"kfhir-bench-{name}-") as tmp:
        command = _command(name, Path(tmp) / "manifest.json")
        if isinstance(command, str):
            return {"status": f"not run: {command}"}
        manifest = {"profiles": plan.profiles, "ig_dir": str(plan.ig_dir.resolve()),
                    "files": [f.to_json() for f in plan.files], "warmup": plan.warmup(),
                    "rotation": plan.rotation(), "pairs": plan.pairs(), "protocol": plan.settings.to_json()}
        cpu = core()
        out = _spawn(command, manifest, Path(tmp), MEDPLUM if name.startswith("medplum") else ROOT, cpu)
    if out["status"] == "ran":
        out["pinned_to_cpu"] = cpu
        out.setdefault("profiles", PROFILES.get(name))
        out["warmup"] = protocol.warmup_summary(out.pop("warmup_pass_ms"), plan.settings)
    return out


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
            began = time.perf_counter()
            try:
                out[name] = run_child(name, plan)
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                out[name] = {"status": f"not run: {type(exc).__name__}: {str(exc)[:200]}"}
            cpu = f", {out[name]['cpu_s']:.0f} s of CPU" if "cpu_s" in out[name] else ""
            if "seconds" in (out[name].get("rotation") or {}):
                cpu += f" (the singles in rotation {out[name]['rotation']['seconds']:.1f} s of it)"
            print(f"contenders: {name} {out[name]['status']} in {time.perf_counter() - began:.0f} s{cpu}",
                  file=sys.stderr, flush=True)
        out[name].setdefault("contender", LABELS[name])
        out[name]["checks"] = CHECKS[name]
    return out
