"""Validators side by side under one protocol (bench/protocol.py): ours, HAPI FHIR 8.8.0, Medplum as shipped
and with the profile parsed once, fhircraft, and the floors fhir.resources `model_validate` and `json.loads`, on
the same single resources and Bundles of 10, 100 and 1,000; each Bundle also in pairs with the same resources alone
(bench/protocol.py rule 4), and in a full run ours by instructions too when valgrind is on PATH (bench/instructions.py).

    python -m bench.compare [--quick] [--only ours,hapi,...] [--out-dir DIR]

Prints Markdown tables and writes bench/results/compare-<date>.json, .md and .svg (time per resource against
Bundle size). QUICK=1 in the environment (make bench QUICK=1) is --quick: Bundles of 10 and 100, the short
protocol (bench/protocol.QUICK), and fhircraft not run (its import and model building alone take over a
minute here)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import (
    bundles,
    chart,
    contenders,
    corpus,
    figures,
    instructions,
    machine,
    protocol,
    report,
    results_files,
    targets,
)
from bench.validation import _cpu_model

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_SKIPS = {"fhircraft": "QUICK=1 (fhircraft's import and model building alone take over a minute; "
                            "make bench runs it)"}


def _profiles() -> list[str]:
    from service.resources import profiles_dir
    return sorted(str(p.resolve()) for p in profiles_dir().glob("StructureDefinition-*.json"))


def run(quick: bool, only: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    before = machine.load_average()
    sizes = (10, 100) if quick else bundles.SIZES
    with tempfile.TemporaryDirectory(prefix="kfhir-bench-compare-") as tmp:
        files = bundles.build(Path(tmp) / "corpus", sizes)
        plan = contenders.Plan(files, _profiles(), corpus.conformance_dir(Path(tmp) / "ig"),
                               protocol.QUICK if quick else protocol.FULL)
        runs = contenders.run(plan, only, QUICK_SKIPS if quick else {})
        # not in a QUICK run: ~12 s of callgrind would take it past its 2 minutes; the full run's figures count
        counted = instructions.count([f.to_json() for f in files], plan.pairs()) \
            if runs["ours"]["status"] == "ran" and not quick else None
    agreed = figures.summarise(files, runs)
    res = {
        "date": dt.date.today().isoformat(),
        "started_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": quick,
        "machine": {"cpu": _cpu_model(), "cpus": os.cpu_count()},
        "corpus": {"valid": sum(f.kind == "valid" for f in files), "invalid": sum(f.kind == "invalid" for f in files),
                   "bundles": list(sizes), "files": [f.to_json() for f in files]},
        "protocol": plan.settings.to_json(),
        "core": contenders.core(),
        "load": machine.load_span(before),
        "agreed": agreed if runs["hapi"]["status"] == "ran" else None,
        "contenders": runs,
        "instructions": counted,
        "wall_s": time.perf_counter() - started,
    }
    res["targets"] = targets.check(res)
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK", "") not in ("", "0"),
                        help="small and fast (default when QUICK=1 is set)")
    parser.add_argument("--only", default=",".join(contenders.CONTENDERS),
                        help="contenders to run, the others reported as not run (default: all of "
                             f"{','.join(contenders.CONTENDERS)})")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the JSON and SVG go (bench/results)")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(contenders.CONTENDERS))
    if unknown:
        parser.error(f"unknown contender(s) {', '.join(unknown)}")
    res = run(args.quick, only)
    text = report.markdown(res)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = results_files.stem(args.out_dir, "compare", res["date"], res["quick"])
    res["table"] = text.splitlines()
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    stem.with_suffix(".svg").write_text(chart.svg(f"Median µs per resource, {res['date']}", res["contenders"]),
                                        encoding="utf-8")
    print(text)
    print(f"\nFigures in {stem}.json, chart in {stem}.svg ({res['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
