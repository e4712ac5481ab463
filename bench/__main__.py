"""`python -m bench`: the benchmarks in turn — validation against the HAPI validator (bench/validation.py),
mapping (bench/mapping.py) and serving against the HAPI JPA peer (bench/serving.py). BENCH_PARTS picks
some (e.g. BENCH_PARTS=mapping,serving); arguments go to the validation benchmark, as before."""
from __future__ import annotations

import os
import sys

from bench import mapping, serving, validation

PARTS = ("validation", "mapping", "serving")


def main() -> int:
    chosen = [p.strip() for p in os.environ.get("BENCH_PARTS", ",".join(PARTS)).split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        print(f"BENCH_PARTS: unknown part(s) {', '.join(unknown)} (known: {', '.join(PARTS)})", file=sys.stderr)
        return 2
    status = 0
    if "validation" in chosen:
        status |= validation.main(sys.argv[1:])
    if "mapping" in chosen:
        print()
        status |= mapping.main([])
    if "serving" in chosen:
        print()
        status |= serving.main([])
    return status


raise SystemExit(main())
