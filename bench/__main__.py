"""`python -m bench`: the benchmarks in turn — validation against the HAPI validator (bench/validation.py),
the validators side by side (bench/compare.py: HAPI, Medplum, fhircraft, floors), mapping (bench/mapping.py)
and serving against the HAPI JPA peer (bench/serving.py). BENCH_PARTS picks some (e.g.
BENCH_PARTS=mapping,serving); arguments go to the validation benchmark, as before.

QUICK=1 (make bench QUICK=1) runs every part small: fewer repetitions, and the HAPI peers only in the
compare part (one JVM start instead of three); the parts report what they skipped as "not run"."""
from __future__ import annotations

import os
import sys

from bench import compare, mapping, serving, validation

PARTS = ("validation", "compare", "mapping", "serving")
QUICK_ARGS = {
    "validation": ["--min-time", "0.005", "--min-reps", "3", "--startup-runs", "1", "--no-hapi"],
    "compare": ["--quick"],
    "mapping": ["--min-time", "0.05", "--min-reps", "5"],
    "serving": ["--seconds", "2", "--no-hapi"],
}


def main() -> int:
    chosen = [p.strip() for p in os.environ.get("BENCH_PARTS", ",".join(PARTS)).split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        print(f"BENCH_PARTS: unknown part(s) {', '.join(unknown)} (known: {', '.join(PARTS)})", file=sys.stderr)
        return 2
    quick = os.environ.get("QUICK", "") not in ("", "0")
    extra = {part: QUICK_ARGS[part] if quick else [] for part in PARTS}
    status = 0
    modules = {"validation": validation, "compare": compare, "mapping": mapping, "serving": serving}
    for n, part in enumerate(p for p in PARTS if p in chosen):
        if n:
            print()
        status |= modules[part].main(extra[part] + (sys.argv[1:] if part == "validation" else []))
    return status


raise SystemExit(main())
