"""Figures of one contender's run: per input size the median and p95 time per resource and
resources/s, cost growth from the smallest to the largest Bundle, and verdict agreement with HAPI.

Size 1 is the valid single resources, each file called over and over: each file's median call, then the median
and p95 over files. "1 (rotation)" is the same files called in rotation, each call a different document: each
file's median over its calls in rotation, then the median and p95 over files.
A Bundle of N entries: the median and p95 of its calls, / N. Growth: the least-squares slope of
the median call time against N (µs per entry) and the exponent log(t_max / t_min) / log(N_max / N_min),
1.00 when cost is linear in N."""
from __future__ import annotations

import math
from typing import Any

from bench import protocol, stats
from bench.bundles import File

ROTATION = "1 (rotation)"  # the key of the valid singles in rotation (bench/protocol.py rule 3)


def size_indexes(files: list[File]) -> dict[str, list[int]]:
    """The files behind each row of the speed table: the valid singles, the invalid ones, each Bundle."""
    out: dict[str, list[int]] = {"1": [], "1 (invalid)": []}
    for i, f in enumerate(files):
        key = "1" if f.kind == "valid" else "1 (invalid)" if f.kind == "invalid" else str(f.entries)
        out.setdefault(key, []).append(i)
    return {k: v for k, v in out.items() if v}


def _singles(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Median and p95 over single files' medians; reps: the fewest calls a file had."""
    medians = [r["median_ns"] for r in results]
    if not medians:
        return None
    med = (stats.median(medians) or 0.0) / 1e3
    return {"entries": 1, "files": len(medians), "median_us": med, "p95_us": (stats.p95(medians) or 0.0) / 1e3,
            "per_s": 1e6 / med if med else None, "reps": min(r["calls"] for r in results)}


def agreed_row(results: list[dict[str, Any]], chosen: list[int]) -> dict[str, Any] | None:
    """Median and p95 over the chosen single files' medians (the files every validator agrees on)."""
    return _singles([results[i] for i in chosen])


def rotation_row(rotation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The valid singles in rotation (bench/protocol.py rule 3): median and p95 over each file's median of its calls
    in rotation, as the row of the same files called one at a time; None when the contender did not report them."""
    row = _singles((rotation or {}).get("results") or [])
    return None if row is None or not rotation else row | {"rounds": rotation["rounds"]}


def entry_ratios(files: list[File], pairs: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Per Bundle size, its pairs with the same resources alone (bench/protocol.py rule 4): the median of the pairs'
    ratios (the Bundle's time over the singles' time, each pair run within the same moment) and its interquartile
    range, and the per-entry medians of both sides; `pairs: 0` with why when the contender made none."""
    out: dict[str, dict[str, Any]] = {}
    for spec in pairs or []:
        f = files[spec["bundle"]]
        ratios = [b / s for b, s in zip(spec["bundle_ns"], spec["singles_ns"], strict=True) if s > 0]
        if not ratios:
            out[str(f.entries)] = {"entries": f.entries, "pairs": 0,
                                   "why": "none: its pairs would take longer than pairs_cap_s"}
            continue
        out[str(f.entries)] = {"entries": f.entries, "pairs": len(ratios), "ratio_median": stats.median(ratios),
                               "ratio_p25": stats.quantile(ratios, 0.25), "ratio_p75": stats.quantile(ratios, 0.75),
                               "bundle_us_per_entry": (stats.median(spec["bundle_ns"]) or 0.0) / 1e3 / f.entries,
                               "singles_us_per_entry": (stats.median(spec["singles_ns"]) or 0.0) / 1e3 / f.entries}
    return out


def _size_rows(files: list[File], results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for kind, key in (("valid", "1"), ("invalid", "1 (invalid)")):
        row = _singles([r for f, r in zip(files, results, strict=True) if f.kind == kind])
        if row is not None:
            rows[key] = row
    for f, r in zip(files, results, strict=True):
        if f.kind == "bundle":
            med = r["median_ns"] / 1e3 / f.entries
            rows[str(f.entries)] = {"entries": f.entries, "files": 1, "median_us": med,
                                    "p95_us": r["p95_ns"] / 1e3 / f.entries,
                                    "per_s": 1e6 / med if med else None, "reps": r["calls"],
                                    "call_median_ms": med * f.entries / 1e3}
    return rows


def growth(rows: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    points = sorted((r["entries"], r["call_median_ms"]) for r in rows.values() if "call_median_ms" in r)
    if len(points) < 2:
        return None
    n = [p[0] for p in points]
    t = [p[1] * 1e3 for p in points]  # µs per call
    mean_n, mean_t = sum(n) / len(n), sum(t) / len(t)
    slope = sum((a - mean_n) * (b - mean_t) for a, b in zip(n, t, strict=True)) / sum((a - mean_n) ** 2 for a in n)
    exponent = math.log(t[-1] / t[0]) / math.log(n[-1] / n[0]) if t[0] > 0 and t[-1] > 0 else None
    return {"from": n[0], "to": n[-1], "slope_us_per_entry": slope, "exponent": exponent}


def disagreements(files: list[File], results: list[dict[str, Any]], oracle: list[dict[str, Any]]) -> dict[str, Any]:
    differ = [f.name for f, mine, theirs in zip(files, results, oracle, strict=True)
              if mine["errors"] != theirs["errors"]]
    return {"count": len(differ), "of": len(files), "files": differ}


def summarise(files: list[File], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Adds sizes, growth and, when HAPI ran, the agreement with HAPI of every row, to every contender that ran.
    Returns the "agreed" set: the single files where every profile validator has HAPI's verdict."""
    ran = runs.get("hapi", {}).get("status") == "ran"
    oracle = [r["errors"] for r in runs["hapi"]["results"]] if ran else None
    indexes = size_indexes(files)
    agreed = protocol.agreed_files(runs)
    singles = [i for i in agreed or [] if files[i].entries == 1]
    for run in runs.values():
        if run["status"] != "ran":
            continue
        run["sizes"] = _size_rows(files, run["results"])
        rotation: dict[str, Any] = run.get("rotation") or {}
        rotated = rotation_row(rotation)
        in_turn = list(zip(rotation.get("order", []), rotation.get("results", []), strict=True))
        if rotated is not None:
            run["sizes"][ROTATION] = rotated
            run["rotation_verdict_changed"] = [files[i].name for i, r in in_turn
                                               if r["errors"] != run["results"][i]["errors"]]
        run["growth"] = growth(run["sizes"])
        if run.get("pairs") is not None:
            run["entry_ratios"] = entry_ratios(files, run["pairs"])
        run["verdicts"] = {"with_errors": sum(r["errors"] for r in run["results"]), "of": len(files)}
        if oracle is None:
            continue
        verdicts = [r["errors"] for r in run["results"]]
        run["disagreements"] = disagreements(files, run["results"], runs["hapi"]["results"])
        for key, chosen in indexes.items():
            run["sizes"][key]["agree"] = protocol.agreement(verdicts, oracle, chosen)
        if rotated is not None:
            in_rotation = list(verdicts)
            for i, r in in_turn:
                in_rotation[i] = r["errors"]
            rotated["agree"] = protocol.agreement(in_rotation, oracle, [i for i, _ in in_turn])
        row = agreed_row(run["results"], singles)
        if row is not None:
            run["sizes"]["agreed"] = row | {"agree": protocol.agreement(verdicts, oracle, singles)}
    return {"files": [files[i].name for i in singles], "of": sum(f.entries == 1 for f in files),
            "judges": [name for name, run in runs.items() if run["status"] == "ran" and name not in protocol.FLOORS]}
