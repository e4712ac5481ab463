"""The contenders' figures as Markdown: one table per input size, one per contender."""
from __future__ import annotations

from typing import Any

from bench import targets

SINGLES = {"1": "1 resource (valid examples)", "1 (invalid)": "1 resource (invalid examples)"}


def _num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _mb(kib: int | None) -> str:
    return "—" if not kib else f"{kib * 1024 / 1e6:,.0f} MB"


def _sizes(runs: dict[str, dict[str, Any]]) -> list[str]:
    keys = {k for r in runs.values() for k in r.get("sizes", {})}
    return sorted(keys, key=lambda k: (int(k.split()[0]), k))


def speed_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| input | contender | median µs/resource | p95 µs/resource | resources/s | × ours (median) | calls |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    ours = runs.get("ours", {}).get("sizes", {})
    for size in _sizes(runs):
        label = SINGLES.get(size) or f"Bundle of {int(size):,}"
        for run in runs.values():
            row = run.get("sizes", {}).get(size)
            if row is None:
                continue
            mine = ours.get(size, {}).get("median_us")
            ratio = row["median_us"] / mine if mine else None
            lines.append(f"| {label} | {run['contender']} | {_num(row['median_us'], 1)} | {_num(row['p95_us'], 1)} | "
                         f"{_num(row['per_s'])} | {_num(ratio, 2)} | {row['reps']} |")
    return lines


def contender_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| contender | profiles | start-up to first result | peak RSS | growth, smallest → largest Bundle "
             "(1.00 = linear) | µs per added entry | verdicts ≠ HAPI |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for run in runs.values():
        if run["status"] != "ran":
            lines.append(f"| {run['contender']} | {run['status']} | | | | | |")
            continue
        g = run.get("growth") or {}
        d = run.get("disagreements")
        differ = f"{d['count']} of {d['of']}" if d else "— (HAPI not run)"
        span = f" ({g['from']:,}→{g['to']:,})" if g else ""
        lines.append(f"| {run['contender']} | {_profiles(run)} | {_num(run['startup_ms'] / 1e3, 2)} s | "
                     f"{_mb(run.get('peak_rss_kib'))} | {_num(g.get('exponent'), 2)}{span} | "
                     f"{_num(g.get('slope_us_per_entry'))} | {differ} |")
    return lines


def _profiles(run: dict[str, Any]) -> str:
    if "profiles_loaded" in run:
        loaded, failed = len(run["profiles_loaded"]), len(run.get("profiles_failed") or {})
        return f"ours: {loaded} of {loaded + failed} loaded" + (" (see JSON for why not)" if failed else "")
    return str(run.get("profiles", ""))


def markdown(res: dict[str, Any]) -> str:
    runs = res["contenders"]
    c = res["corpus"]
    lines = [f"## Validators side by side, {res['date']}", "",
             f"Corpus: {c['valid']} valid and {c['invalid']} invalid single resources (the IG examples), and "
             f"collection Bundles of {', '.join(f'{n:,}' for n in c['bundles'])} entries built from the valid ones; "
             f"the same files for every contender. Each contender in its own process, after warm-up; time = parse + "
             f"validate from the text in memory (HAPI: read + parse + validate, timed in the JVM). "
             f"{res['machine']['cpus']} CPUs ({res['machine']['cpu']}); Python contenders pinned to one core.", ""]
    lines += speed_table(runs) + [""] + contender_table(runs) + ["", "Targets (validator):", ""]
    lines += targets.markdown(res["targets"])
    lines += ["", "Verdict: a file has errors when the contender reports an error or fatal issue; "
              "\"≠ HAPI\" counts the files (singles and Bundles) where that differs from HAPI's verdict."]
    return "\n".join(lines)
