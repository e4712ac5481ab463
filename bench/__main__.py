"""`python -m bench`: the benchmarks in turn — validation of the corpus by ours (bench/validation.py: every
example and mutation, start-up and memory), the validators side by side under one protocol (bench/compare.py:
ours, HAPI, Medplum twice, fhircraft, floors; bench/protocol.py), mapping (bench/mapping.py) and serving on equal
terms (bench/serving.py: ours on SQLite and PostgreSQL, HAPI JPA). BENCH_PARTS picks some (e.g.
BENCH_PARTS=mapping,serving); arguments go to the validation benchmark, as before. Each part's time is printed,
with the CPU time it took (this process and the processes it waited for: the contenders, the servers; not
PostgreSQL, which runs as a daemon) and the load average beside it: the machine is shared, and a part's CPU time
is what its wall time would be on an idle machine where it runs on one core at a time.

HAPI is measured in the compare part only, under the protocol every contender follows: the validation part's
own HAPI run (three passes over the corpus in one JVM, the first of them cold) is what issue 21 showed to
flatter us, so it is off (`python -m bench.validation` without --no-hapi still runs it, for its verdicts).

QUICK=1 (make bench QUICK=1) runs every part small: the short protocol, Bundles of 10 and 100, serving for 2 s
on SQLite only; the parts report what they skipped as "not run"."""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from bench import compare, machine, mapping, results_files, serving, validation

PARTS = ("validation", "compare", "mapping", "serving")
# The validation part times every file of the corpus (some 700 with the mutations) for --min-time each: 0.03 s keeps
# it near half a minute, within make bench's 15 minutes; the compare part times under the common protocol.
ARGS = {"validation": ["--no-hapi", "--min-time", "0.03"], "compare": [], "mapping": [], "serving": []}
QUICK_ARGS = {
    "validation": ["--min-time", "0.005", "--min-reps", "3", "--startup-runs", "1", "--no-hapi"],
    "compare": ["--quick"],
    "mapping": ["--min-time", "0.05", "--min-reps", "5"],
    "serving": [],  # QUICK=1 in the environment: 2 s, SQLite only
}


def main() -> int:
    chosen = [p.strip() for p in os.environ.get("BENCH_PARTS", ",".join(PARTS)).split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        print(f"BENCH_PARTS: unknown part(s) {', '.join(unknown)} (known: {', '.join(PARTS)})", file=sys.stderr)
        return 2
    quick = os.environ.get("QUICK", "") not in ("", "0")
    modules = {"validation": validation, "compare": compare, "mapping": mapping, "serving": serving}
    status, took = 0, []
    began, cpu_began = time.monotonic(), machine.cpu_seconds()
    for n, part in enumerate(p for p in PARTS if p in chosen):
        if n:
            print()
        load = machine.load_average()
        start, cpu = time.monotonic(), machine.cpu_seconds()
        status |= modules[part].main((QUICK_ARGS if quick else ARGS)[part]
                                     + (sys.argv[1:] if part == "validation" else []))
        took.append(f"{part} {time.monotonic() - start:.0f} s, {machine.cpu_seconds() - cpu:.0f} s of CPU ({load} "
                    f"at its start)")
        print(f"\n[bench] {took[-1]}", flush=True)
    summary = (f"total {time.monotonic() - began:.0f} s, {machine.cpu_seconds() - cpu_began:.0f} s of CPU: "
               + "; ".join(took))
    print(f"\n[bench] {'QUICK ' if quick else ''}{summary}")
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    date = dt.date.today().isoformat()
    path = results_files.stem(results, "run", date, quick).with_suffix(".json")
    path.write_text(json.dumps({"date": date, "quick": quick, "parts": chosen, "summary": summary}) + "\n",
                    encoding="utf-8")
    return status


raise SystemExit(main())
