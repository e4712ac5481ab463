"""Validation benchmark: our validator against HAPI FHIR 8.8.0 on the same files.

    python -m bench [--min-time 0.1] [--min-reps 20] [--hapi-passes 3] [--startup-runs 3] [--no-hapi]

Prints a table and writes the same figures to bench/results/validation-<date>.json. What is measured:

* corpus: every valid example (profiles/examples), every invalid one (profiles/examples/invalid), and the
  mutations of the valid ones (tests/validation/corpus.py), grouped by targeted profile (bench/corpus.py);
* ours: default_validator().validate(doc) in this process, pinned to one core, after a warm-up pass; per file
  the median of repeated calls (bench/ours.py); per group the median and p95 of those per-file figures;
* startup and memory: fresh `python -m bench.startup` processes (bench/startup.py);
* HAPI: the harness over the same files, the list given several times in one JVM; figures of the last pass
  (bench/hapi.py);
* ratio: HAPI median / our median, our figure being parse + validate, since HAPI's per-file time includes
  reading and parsing the file (validate-only ratio in the JSON); agreement: files where one validator reports
  an error or fatal issue and the other none.

Targets are printed with PASS/MISS; nothing is tuned to meet them."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import corpus, hapi, ours, startup, stats
from bench.corpus import BASE_SUFFIX, Item

RESULTS = Path(__file__).resolve().parent / "results"
MA_PROFILE = "ketamine-administration"
KINDS = (("valid", "valid examples"), ("invalid", "invalid examples"), ("mutated", "mutated"))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _summary(rows: list[dict[str, Any]], hapi_ran: bool) -> dict[str, Any]:
    validate = [r["ours_validate_us"] for r in rows if r["ours_validate_us"] is not None]
    both = [r["ours_validate_us"] + r["ours_parse_us"] for r in rows if r["ours_validate_us"] is not None]
    out: dict[str, Any] = {
        "files": len(rows),
        "ours_validate_median_us": stats.median(validate), "ours_validate_p95_us": stats.p95(validate),
        "ours_parse_validate_median_us": stats.median(both), "ours_parse_validate_p95_us": stats.p95(both),
    }
    if hapi_ran:
        theirs = [r["hapi_us"] for r in rows]
        out["hapi_median_us"] = stats.median(theirs)
        out["hapi_p95_us"] = stats.p95(theirs)
        out["ratio_hapi_over_ours_parse_validate"] = _ratio(out["hapi_median_us"], out["ours_parse_validate_median_us"])
        out["ratio_hapi_over_ours_validate"] = _ratio(out["hapi_median_us"], out["ours_validate_median_us"])
        out["verdicts_differ"] = sum(r["ours_errors"] != r["hapi_errors"] for r in rows)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _mb(kib: int | None) -> str:
    return "—" if kib is None else f"{kib * 1024 / 1e6:.1f} MB ({kib / 1024:.1f} MiB)"


def _verdict(ok: bool | None) -> str:
    return "NOT RUN" if ok is None else ("PASS" if ok else "MISS")


def table(res: dict[str, Any]) -> str:
    lines: list[str] = []
    c = res["corpus"]
    hapi_ran = res["hapi"]["status"] == "ran"
    lines.append(f"Validation benchmark {res['date']}: {c['total']} files ({c['valid']} valid examples, "
                 f"{c['invalid']} invalid examples, {c['mutated']} mutated); {res['machine']['cpu']}, "
                 f"{res['machine']['cpus']} CPUs, Python {res['machine']['python']}")
    lines.append("µs per file. ours: median of repeated validate(dict) calls per file, after warm-up, one core; "
                 "+parse adds json.loads.")
    if hapi_ran:
        lines.append(f"HAPI: in-JVM read+parse+validate per file, pass {res['hapi']['passes']} of "
                     f"{res['hapi']['passes']} over the same list in one JVM.")
    lines.append("Group columns: median / p95 over the group's files. ×: HAPI median / ours(+parse) median. "
                 "differ: files where only one validator reports an error.")
    head = (f"{'group':<30}{'files':>6}{'ours med':>10}{'ours p95':>10}{'+parse med':>12}"
            f"{'HAPI med':>11}{'HAPI p95':>11}{'×':>8}{'differ':>8}")
    lines += ["", head, "-" * len(head)]

    def row(label: str, s: dict[str, Any]) -> str:
        return (f"{label:<30}{s['files']:>6}{_fmt(s['ours_validate_median_us']):>10}"
                f"{_fmt(s['ours_validate_p95_us']):>10}{_fmt(s['ours_parse_validate_median_us']):>12}"
                f"{_fmt(s.get('hapi_median_us')):>11}{_fmt(s.get('hapi_p95_us')):>11}"
                f"{_fmt(s.get('ratio_hapi_over_ours_parse_validate'), 1):>8}"
                f"{(str(s['verdicts_differ']) if 'verdicts_differ' in s else '—'):>8}")

    for name, s in res["groups"].items():
        lines.append(row(name, s))
    lines.append("-" * len(head))
    for kind, label in KINDS:
        lines.append(row(f"  {label}", res["by_kind"][kind]))
    lines.append(row("ALL", res["overall"]))
    lines.append("")

    o = res["ours"]
    hp = res["hapi"]
    throughput = f"ours {o['resources_per_s']:,.0f} resources/s (median of {len(o['pass_s'])} passes over " \
                 f"the corpus, one core)"
    if hapi_ran:
        throughput += f"; HAPI {hp['resources_per_s']:,.0f} resources/s (sum of last-pass in-JVM per-file times)"
    lines.append(f"Throughput: {throughput}")

    st = res["startup"]
    if "runs" in st:
        runs = st["runs"]
        first = [r["spawn_to_first_result_ms"] for r in runs]
        m = runs[[r["spawn_to_first_result_ms"] for r in runs].index(sorted(first)[len(first) // 2])]
        lines.append(f"Startup (ours, {len(runs)} fresh process(es)): start → first result median "
                     f"{stats.median(first):,.0f} ms, worst {max(first):,.0f} ms (median run: interpreter "
                     f"{m['interpreter_start_ms']:.0f} + import {m['import_ms']:.0f} + build validator "
                     f"{m['build_validator_ms']:.0f} + first validation {m['first_validation_ms']:.0f} ms of "
                     f"{m['example']})")
        corpus_wall_ms = stats.median([r["spawn_to_corpus_done_ms"] for r in runs]) or 0.0
        lines.append(f"Memory (ours): peak RSS after R4 core + our IG + the corpus validated once "
                     f"{_mb(st['peak_rss_kib'])}; at first result {_mb(st['peak_rss_at_first_kib'])}; "
                     f"fresh process over the corpus once: {corpus_wall_ms / 1e3:.2f} s wall")
    else:
        lines.append(f"Startup and memory (ours): {st['status']}")

    if hapi_ran:
        build = hp["harness_build"]
        lines.append(f"HAPI {hp['hapi_version']}: setup {hp['setup_ms']:,} ms + profile check "
                     f"{hp['profile_check_ms']:,} ms + warm-up {hp['warmup_ms']:,} ms (JVM ready at "
                     f"{hp['jvm_uptime_at_ready_ms']:,} ms uptime); first pass median "
                     f"{_fmt(hp['first_pass_median_us'])} µs, p95 {_fmt(hp['first_pass_p95_us'])} µs; JVM uptime "
                     f"after first pass {hp['jvm_uptime_after_first_pass_ms'] / 1e3:.1f} s")
        lines.append(f"HAPI process wall time {hp['process_wall_s']:.1f} s for {hp['passes']} pass(es) over "
                     f"{hp['files']} files; JVM peak RSS {_mb(hp['peak_rss_ru_maxrss_kib'])} (wait4 ru_maxrss; "
                     f"polled VmHWM {_mb(hp['peak_rss_vmhwm_polled_kib'])}); java options "
                     f"{' '.join(hp['command'][1:-2]) or '(none)'}; harness build "
                     f"{'ran' if build['was_stale'] else 'up to date'} ({build['seconds']:.1f} s)")
        if hp["verdict_changed_between_passes"]:
            lines.append(f"HAPI verdict changed between passes for: {', '.join(hp['verdict_changed_between_passes'])}")
    else:
        lines.append(f"HAPI: {hp['status']}")

    lines += ["", "Targets:"]
    for t in res["targets"]:
        lines.append(f"  {t['verdict']:<9}{t['target']:<52}{t['measured']}")

    if hapi_ran:
        differ = [r for r in res["per_file"] if r["ours_errors"] != r["hapi_errors"]]
        lines.append("")
        lines.append(f"Verdicts differ on {len(differ)} of {len(res['per_file'])} files"
                     + (":" if differ else "."))
        for r in differ[:15]:
            lines.append(f"  {r['kind']:<8} {r['name']}: ours {'errors' if r['ours_errors'] else 'no errors'}, "
                         f"HAPI {'errors' if r['hapi_errors'] else 'no errors'}")
        if len(differ) > 15:
            lines.append(f"  … {len(differ) - 15} more in the JSON (per_file, with both sides' messages)")
    return "\n".join(lines)


def _targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    ma = res["ma_valid_examples"]
    med = ma["ours_validate_median_us"]
    out.append({"target": "≤ 250 µs median, ketamine MedicationAdministration",
                "measured": f"{_fmt(med)} µs (validate, {ma['files']} valid {MA_PROFILE} examples)"
                if med is not None else "not measured: no valid ketamine-administration example",
                "value": med, "verdict": _verdict(None if med is None else med <= 250)})
    ov = res["overall"]
    ratio = ov.get("ratio_hapi_over_ours_parse_validate")
    if res["hapi"]["status"] == "ran":
        measured = (f"{_fmt(ratio, 1)}× (medians, ours incl. parse; validate only "
                    f"{_fmt(ov.get('ratio_hapi_over_ours_validate'), 1)}×)")
    else:
        measured = f"HAPI {res['hapi']['status']}"
    out.append({"target": "≥ 20× faster than HAPI on the same corpus", "measured": measured, "value": ratio,
                "verdict": _verdict(None if ratio is None else ratio >= 20)})
    st = res["startup"]
    rss = st.get("peak_rss_kib")
    out.append({"target": "< 150 MB resident (R4 core + IG + corpus once)",
                "measured": _mb(rss) + " peak RSS, worst run" if rss else f"not measured: {st.get('status')}",
                "value": rss, "verdict": _verdict(None if rss is None else rss * 1024 < 150e6)})
    first = st.get("worst_first_result_ms")
    out.append({"target": "first validation after start < 2 s",
                "measured": f"{first / 1e3:.2f} s (worst of {len(st['runs'])} fresh process(es))"
                if first is not None else f"not measured: {st.get('status')}",
                "value": first, "verdict": _verdict(None if first is None else first < 2000)})
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kfhir-bench-") as tmp:
        mutation_dir = Path(tmp) / "mutations"
        mutation_dir.mkdir()
        items: list[Item] = corpus.build(mutation_dir)
        ig_dir = corpus.conformance_dir(Path(tmp) / "ig")
        print(f"corpus: {len(items)} files; measuring our validator (min {args.min_time} s per file)…",
              file=sys.stderr, flush=True)
        mine = ours.measure(items, args.min_time, args.min_reps)

        print("startup and memory: fresh processes…", file=sys.stderr, flush=True)
        ma = next((i for i in items if i.kind == "valid" and i.group == MA_PROFILE), None) \
            or next((i for i in items if i.kind == "valid" and i.name.startswith("MedicationAdministration")), None)
        st: dict[str, Any]
        if ma is None:
            st = {"status": "not run: no valid MedicationAdministration example"}
        else:
            try:
                st = startup.run(ma.path, args.startup_runs)
                st["peak_rss_kib"] = max(max(r["peak_rss_vmhwm_kib"] or 0, r["peak_rss_ru_maxrss_kib"] or 0)
                                         for r in st["runs"])
                st["peak_rss_at_first_kib"] = max(r["peak_rss_at_first_result_kib"] or 0 for r in st["runs"])
                st["worst_first_result_ms"] = max(r["spawn_to_first_result_ms"] for r in st["runs"])
                st["median_first_result_ms"] = stats.median([r["spawn_to_first_result_ms"] for r in st["runs"]])
            except Exception as exc:  # noqa: BLE001 - reported, not dropped
                st = {"status": f"not run: {exc}"}

        if args.no_hapi:
            hp: dict[str, Any] = {"status": "not run: --no-hapi given"}
        else:
            print(f"HAPI: {args.hapi_passes} passes in one JVM…", file=sys.stderr, flush=True)
            hp = hapi.run([i.path for i in items], ig_dir, args.hapi_passes)
    hapi_ran = hp["status"] == "ran"
    if hapi_ran:
        first_pass = [ms * 1e3 for ms in hp["per_file_ms_by_pass"][0]]
        hp["first_pass_median_us"] = stats.median(first_pass)
        hp["first_pass_p95_us"] = stats.p95(first_pass)
        hp["resources_per_s"] = len(items) / (sum(hp["per_file_ms"]) / 1e3)

    per_file = []
    for k, item in enumerate(items):
        m = mine["per_file"][k]
        row: dict[str, Any] = {"name": item.name, "kind": item.kind, "group": item.group,
                               "file": str(item.path) if item.kind != "mutated" else item.path.name,
                               "ours_validate_us": m["validate_us"], "ours_parse_us": m["parse_us"],
                               "ours_reps": m["reps"], "ours_errors": m["errors"],
                               "ours_error_messages": m.get("error_messages", [])}
        if hapi_ran:
            row.update(hapi_us=hp["per_file_ms"][k] * 1e3, hapi_errors=hp["errors"][k],
                       hapi_error_messages=hp["error_messages"][k])
        per_file.append(row)

    def order(g: str) -> tuple[bool, str]:
        return g.endswith(BASE_SUFFIX), g

    groups = {g: _summary([r for r in per_file if r["group"] == g], hapi_ran)
              for g in sorted({r["group"] for r in per_file}, key=order)}
    res: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "started_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "corpus": {"total": len(items), **{kind: sum(i.kind == kind for i in items) for kind, _ in KINDS}},
        "groups": groups,
        "by_kind": {kind: _summary([r for r in per_file if r["kind"] == kind], hapi_ran) for kind, _ in KINDS},
        "overall": _summary(per_file, hapi_ran),
        "ma_valid_examples": _summary([r for r in per_file if r["kind"] == "valid" and r["group"] == MA_PROFILE],
                                      hapi_ran),
        "ours": {k: v for k, v in mine.items() if k != "per_file"},
        "startup": st,
        "hapi": {k: v for k, v in hp.items() if k not in ("per_file_ms", "errors", "error_messages")},
        "per_file": per_file,
    }
    res["targets"] = _targets(res)
    res["bench_wall_s"] = time.perf_counter() - started
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-time", type=float, default=0.1,
                        help="seconds each file is validated repeatedly by our validator (default 0.1)")
    parser.add_argument("--min-reps", type=int, default=20, help="at least this many calls per file (default 20)")
    parser.add_argument("--hapi-passes", type=int, default=3,
                        help="times the file list goes through the one JVM; the last pass is reported (default 3)")
    parser.add_argument("--startup-runs", type=int, default=3, help="fresh processes for startup/memory (default 3)")
    parser.add_argument("--no-hapi", action="store_true", help="do not run HAPI (reported as not run)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default bench/results/validation-<date>.json)")
    args = parser.parse_args(argv)
    if args.hapi_passes < 1 or args.startup_runs < 1 or args.min_reps < 1:
        parser.error("--hapi-passes, --startup-runs and --min-reps must be at least 1")

    res = run(args)
    text = table(res)
    out = args.out or RESULTS / f"validation-{res['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    res["table"] = text.splitlines()
    out.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(text)
    print(f"\nFigures written to {out} (bench wall time {res['bench_wall_s']:.0f} s)")
    return 0
