"""Startup and memory of a fresh Python process.

Run as `python -m bench.startup SPAWN_NS EXAMPLE`: the child imports the service, builds the validator
(R4 core + our package), validates one MedicationAdministration example, then validates the whole corpus
once (examples, invalid examples, mutations, one at a time), and prints its own timings and peak RSS as JSON.
SPAWN_NS is time.monotonic_ns() in the parent just before it started the child (CLOCK_MONOTONIC is shared by
all processes on Linux), so the first figure includes interpreter start-up and site imports."""
from __future__ import annotations

import time

T_MAIN = time.monotonic_ns()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _status_kib() -> dict[str, int]:
    """VmHWM (peak resident) and VmRSS from /proc/self/status, in KiB; {} off Linux."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _ms(start: int, end: int) -> float:
    return (end - start) / 1e6


def child(spawn_ns: int, example: Path) -> dict[str, Any]:
    t0 = time.monotonic_ns()
    from service.validation import default_validator
    t_import = time.monotonic_ns()
    validator = default_validator()
    t_built = time.monotonic_ns()
    findings = validator.validate(json.loads(example.read_text(encoding="utf-8")))
    t_first = time.monotonic_ns()
    at_first = _status_kib()

    # The corpus once, as bench.corpus builds it (mutations in memory, not on disk).
    from bench.corpus import invalid_paths, valid_paths
    from bench.peers import corpus_module
    count = 0
    for path in valid_paths() + invalid_paths():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        validator.validate(doc)
        count += 1
    for _name, doc in corpus_module().mutated(valid_paths()):
        validator.validate(doc)
        count += 1
    t_corpus = time.monotonic_ns()
    after = _status_kib()
    return {
        "example": example.name,
        "first_result_errors": sum(f.severity in ("error", "fatal") for f in findings),
        "interpreter_start_ms": _ms(spawn_ns, T_MAIN),
        "import_ms": _ms(t0, t_import),
        "build_validator_ms": _ms(t_import, t_built),
        "first_validation_ms": _ms(t_built, t_first),
        "spawn_to_first_result_ms": _ms(spawn_ns, t_first),
        "rss_at_first_result_kib": at_first.get("VmRSS"),
        "peak_rss_at_first_result_kib": at_first.get("VmHWM"),
        "corpus_resources": count,
        "corpus_once_ms": _ms(t_first, t_corpus),
        "spawn_to_corpus_done_ms": _ms(spawn_ns, t_corpus),
        "rss_after_corpus_kib": after.get("VmRSS"),
        "peak_rss_vmhwm_kib": after.get("VmHWM"),
        "peak_rss_ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def run(example: Path, runs: int, timeout: float = 120) -> dict[str, Any]:
    """`runs` fresh processes, one after the other; raises RuntimeError if one fails."""
    results = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for _ in range(runs):
        spawn_ns = time.monotonic_ns()
        proc = subprocess.run([sys.executable, "-m", "bench.startup", str(spawn_ns), str(example)],  # noqa: S603
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"startup child exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        results.append(json.loads(proc.stdout))
    return {"runs": results}


if __name__ == "__main__":
    print(json.dumps(child(int(sys.argv[1]), Path(sys.argv[2]))))
