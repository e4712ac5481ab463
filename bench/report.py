"""The contenders' figures as Markdown: one table per input size, one per contender."""
from __future__ import annotations

from typing import Any

from bench import figures, targets

SINGLES = {figures.ROTATION: "1 resource (valid examples) in rotation, each call another file",
           "1": "1 resource (valid examples), one file repeated", "1 (invalid)": "1 resource (invalid examples)",
           "agreed": "1 resource, only files all validators agree on"}
#: the single rows first, in this order, then the Bundles by size
ORDER = ("agreed", figures.ROTATION, "1", "1 (invalid)")


def _num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _mb(kib: int | None) -> str:
    return "—" if not kib else f"{kib * 1024 / 1e6:,.0f} MB"


def _sizes(runs: dict[str, dict[str, Any]]) -> list[str]:
    keys = {k for r in runs.values() for k in r.get("sizes", {})}
    return sorted(keys, key=lambda k: (ORDER.index(k), 0) if k in ORDER else (len(ORDER), int(k)))


def _agree(row: dict[str, Any]) -> str:
    a = row.get("agree")
    return "— (HAPI not run)" if a is None else f"{a['agree']} of {a['of']}"


def speed_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| input | contender | median µs/resource | p95 µs/resource | resources/s | × ours (median) | calls | "
             "verdict = HAPI's |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
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
                         f"{_num(row['per_s'])} | {_num(ratio, 2)} | {row['reps']} | {_agree(row)} |")
    return lines


def pairs_table(runs: dict[str, dict[str, Any]], instructions: dict[str, Any] | None) -> list[str]:
    """Rule 4: each Bundle against the same resources alone, timed in pairs; and ours by instructions, if counted."""
    sizes = sorted({k for r in runs.values() for k in r.get("entry_ratios") or {}}, key=int)
    if not sizes:
        return []
    lines = ["Bundle ÷ the same resources alone, timed in pairs (bench/protocol.py rule 4: one call of the Bundle and "
             "one pass over its entries as singles, within the same moment, taking turns at going first): the "
             "median of the pairs' ratios, its interquartile range, the pairs; below 1.00 an entry costs less in "
             "the Bundle.", "",
             "| contender | " + " | ".join(f"Bundle of {int(k):,}" for k in sizes) + " |",
             "| --- |" + " ---: |" * len(sizes)]
    for run in runs.values():
        rows = run.get("entry_ratios")
        if not rows:
            continue
        cells = []
        for k in sizes:
            row = rows.get(k)
            cells.append("—" if row is None else row.get("why", "none") if not row["pairs"] else
                         f"{row['ratio_median']:,.3f}× ({row['ratio_p25']:,.3f}-{row['ratio_p75']:,.3f}, "
                         f"{row['pairs']:,})")
        lines.append(f"| {run['contender']} | " + " | ".join(cells) + " |")
    if instructions:
        lines += ["", f"By instructions (ours only, {instructions['what']}): " + (", ".join(
            f"Bundle of {int(k):,}: {v:,.4f}×" for k, v in instructions["ratios"].items())
            if instructions.get("ratios") else instructions.get("status", "not counted")) + "."]
    return lines


def _warmup(run: dict[str, Any]) -> str:
    w = run.get("warmup")
    if not w:
        return "—"
    if not w["steady"]:
        last = "—" if w["last_change"] is None else _num(w["last_change"] * 100, 1)
        return f"not steady after {w['passes']} passes (last change {last} %)"
    first, steady = _num(w["first_pass_ms"], 1), _num(w["steady_pass_ms"], 1)
    return f"steady after {w['steady_after']} passes ({first} → {steady} ms)"


def contender_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| contender | checks | profiles | warm-up (pass: first → steady) | start-up to first result | peak RSS | "
             "growth, smallest → largest Bundle (1.00 = linear) | µs per added entry | verdicts ≠ HAPI |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for run in runs.values():
        if run["status"] != "ran":
            lines.append(f"| {run['contender']} | {run.get('checks', '')} | {run['status']} | | | | | | |")
            continue
        g = run.get("growth") or {}
        d = run.get("disagreements")
        differ = f"{d['count']} of {d['of']}" if d else "— (HAPI not run)"
        span = f" ({g['from']:,}→{g['to']:,})" if g else ""
        lines.append(f"| {run['contender']} | {run.get('checks', '')} | {_profiles(run)} | {_warmup(run)} | "
                     f"{_num(run['startup_ms'] / 1e3, 2)} s | {_mb(run.get('peak_rss_kib'))} | "
                     f"{_num(g.get('exponent'), 2)}{span} | {_num(g.get('slope_us_per_entry'))} | {differ} |")
    return lines


def hapi_lines(hapi: dict[str, Any]) -> list[str]:
    """HAPI's per-call constant, and how its JVM ran."""
    if hapi.get("status") != "ran":
        return []
    c, jvm = hapi.get("per_call_constant") or {}, hapi.get("jvm") or {}
    lines = [f"HAPI's JVM: {jvm.get('compiler', '?')}, GC {', '.join(jvm.get('gc', [])) or '?'} (the JVM's default "
             f"for {jvm.get('available_processors', '?')} CPU), heap max {jvm.get('max_heap_mb', '?')} MB, "
             f"options {' '.join(jvm.get('input_arguments', [])) or '(none)'}, Java {jvm.get('java_version', '?')}."]
    if c.get("status") == "ran":
        sizes = hapi.get("sizes", {})
        rotated = figures.ROTATION in sizes
        single = sizes.get(figures.ROTATION if rotated else "1", {}).get("median_us")
        share = (f"; {c['median_ns'] / 1e3 / single * 100:,.0f} % of its median valid single"
                 f"{' in rotation' if rotated else ''}") if single else ""
        lines.append(f"HAPI's per-call constant: {c['what']}: median {c['median_ns'] / 1e3:,.0f} µs, p95 "
                     f"{c['p95_ns'] / 1e3:,.0f} µs over {c['calls']} calls{share}. It is paid once per "
                     f"validateWithResult call, so once per Bundle, not per entry.")
    else:
        lines.append(f"HAPI's per-call constant: {c.get('status', 'not measured')}")
    return lines


def _profiles(run: dict[str, Any]) -> str:
    if "profiles_loaded" in run:
        loaded, failed = len(run["profiles_loaded"]), len(run.get("profiles_failed") or {})
        return f"ours: {loaded} of {loaded + failed} loaded" + (" (see JSON for why not)" if failed else "")
    return str(run.get("profiles", ""))


def markdown(res: dict[str, Any]) -> str:
    runs = res["contenders"]
    c, st = res["corpus"], res["protocol"]
    agreed = res.get("agreed")
    lines = [f"## Validators side by side, {res['date']}", "",
             f"Load while measuring: {res['load']}. {res['machine']['cpus']} CPUs ({res['machine']['cpu']}) shared "
             f"with other work; every contender pinned to the same one core (cpu {res.get('core')}), JVM and Node "
             f"included.", "",
             f"Corpus: {c['valid']} valid and {c['invalid']} invalid single resources (the IG examples), and "
             f"collection Bundles of {', '.join(f'{n:,}' for n in c['bundles'])} entries built from the valid ones; "
             f"the same files for every contender. Protocol (bench/protocol.py): each contender in its own process "
             f"warms up in passes over the single resources and the smallest Bundle until the median of the last "
             f"{st['window']} passes is within {st['tolerance'] * 100:.0f} % of the {st['window']} before (at most "
             f"{st['max_s']:.0f} s; the warm-up column says how many passes it took), then each file is timed for "
             f"{st['per_file_s']} s (at least {st['min_calls']} calls), and the valid singles in rotation, passes "
             f"of one call of each in the order the Bundles cycle through them (each call another document), for "
             f"{st['per_file_s']} s per file in all; both rows in {st.get('rounds', 1)} alternated rounds (files "
             f"then rotation, rotation then files in reverse order), each file's median the median of its rounds' "
             f"medians; then each Bundle in pairs with the same resources alone (at least {st.get('min_pairs', '—')} "
             f"pairs, {st.get('pair_s', '—')} s). "
             f"\"One file repeated\" calls one document over and over, so what a validator remembers of a document "
             f"is found on every call: the single target is judged in rotation, the Bundle-entry target in pairs. "
             f"Time = parse + validate from the text in memory.", ""]
    if agreed is not None:
        lines += [f"\"Only files all validators agree on\": the {len(agreed['files'])} of {agreed['of']} single "
                  f"files where {', '.join(agreed['judges'])} all have HAPI's verdict.", ""]
    lines += speed_table(runs) + [""]
    pairs = pairs_table(runs, res.get("instructions"))
    lines += pairs + [""] if pairs else []
    lines += contender_table(runs) + [""] + hapi_lines(runs.get("hapi", {}))
    changed = [f"{run['contender']}: {', '.join(run['rotation_verdict_changed'])}" for run in runs.values()
               if run.get("rotation_verdict_changed")]
    if changed:
        lines += ["", "Verdicts that differ in rotation from the same file repeated: " + "; ".join(changed) + "."]
    lines += ["", "Targets (validator):", ""] + targets.markdown(res["targets"])
    lines += ["", "Verdict: a file has errors when the contender reports an error or fatal issue; "
              "\"verdict = HAPI's\" counts the row's files where it is HAPI's verdict, \"≠ HAPI\" the files "
              "(singles and Bundles) where it is not."]
    return "\n".join(lines)
