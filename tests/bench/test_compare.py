"""Smoke test of the QUICK path of `make bench`'s compare part, and its figures and chart.

The smoke test runs the in-process contenders only (ours, fhir.resources, json.loads: a few seconds); the
others must still appear in the table as "not run" with the reason."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from bench import bundles, chart, child, figures, instructions, targets
from bench.contenders import CONTENDERS

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"


def test_the_quick_path_prints_the_table_and_writes_json_and_chart(tmp_path: Path) -> None:
    env = dict(os.environ, QUICK="1")
    proc = subprocess.run([sys.executable, "-m", "bench.compare", "--only", "ours,fhir.resources,json.loads",
                           "--out-dir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    assert "| input | contender | median µs/resource |" in table
    for size in ("1 resource (valid examples) in rotation, each call another file |",
                 "1 resource (valid examples), one file repeated |", "Bundle of 10 ", "Bundle of 100 "):
        assert sum(line.startswith(f"| {size}") for line in table.splitlines()) == 3, size
    assert "Bundle of 1,000" not in table  # QUICK stops at 100 entries
    assert "| target | measured | verdict | off by |" in table
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if "| not run: " in line}
    for label, why in (("HAPI FHIR 8.8.0", "not chosen"), ("Medplum, as shipped", "not chosen"),
                       ("Medplum, profile parsed once", "not chosen"), ("fhircraft", "QUICK=1")):
        assert f"not run: {why}" in rows[f"| {label}"], label
        assert "no terminology" in rows[f"| {label}"] or label.startswith("HAPI")  # what it checks, even unrun

    (json_path,) = tmp_path.glob("compare-*.json")
    res = json.loads(json_path.read_text(encoding="utf-8"))
    assert res["quick"] is True and list(res["contenders"]) == list(CONTENDERS)
    ours = res["contenders"]["ours"]
    assert ours["status"] == "ran" and set(ours["sizes"]) == {"1", "1 (rotation)", "1 (invalid)", "10", "100"}
    assert ours["verdicts"]["with_errors"] >= res["corpus"]["invalid"] - 1  # the invalid examples are invalid
    assert res["contenders"]["json.loads"]["verdicts"]["with_errors"] == 0
    assert all(r["startup_ms"] > 0 and r["peak_rss_kib"] > 0 for r in res["contenders"].values()
               if r["status"] == "ran")
    valid = [i for i, f in enumerate(res["corpus"]["files"]) if f["kind"] == "valid"]
    for run in (r for r in res["contenders"].values() if r["status"] == "ran"):  # the protocol was followed
        assert run["warmup"]["passes"] >= 1 and run["pinned_to_cpu"] == res["core"]
        assert all(r["calls"] >= res["protocol"]["min_calls"] for r in run["results"])
        # every valid single in rotation, in the Bundles' order, each called as often as the others
        rotation = run["rotation"]
        assert rotation["order"] == valid and len(rotation["results"]) == len(valid)
        assert all(r["calls"] == rotation["rounds"] >= res["protocol"]["min_calls"] for r in rotation["results"])
        assert run["sizes"]["1 (rotation)"]["files"] == len(valid) and run["rotation_verdict_changed"] == []
    assert not any(r["errors"] for r in ours["rotation"]["results"])  # valid examples stay valid in rotation
    assert "Load while measuring: load average" in table
    assert (tmp_path / f"compare-quick-{res['date']}.md").read_text(encoding="utf-8").strip() == table.split("\nFigures")[0].strip()
    (svg_path,) = tmp_path.glob("compare-*.svg")
    svg = ET.parse(svg_path).getroot()  # noqa: S314 - the chart we just wrote
    assert len(svg.findall(f"{SVG}polyline")) == 3


def test_make_bench_quick_passes_quick_and_skips_the_fhircraft_install() -> None:
    plan = subprocess.run(["make", "-n", "bench", "QUICK=1"], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=60).stdout
    assert "QUICK=1 .venv/bin/python -m bench" in plan
    assert "fhircraft" not in plan


def test_growth_is_linear_for_cost_proportional_to_entries() -> None:
    rows = {str(n): {"entries": n, "call_median_ms": 0.2 * n + 0.05} for n in (10, 100, 1000)}
    g = figures.growth(rows)
    assert g is not None
    assert abs(g["slope_us_per_entry"] - 200) < 1e-6
    assert 0.97 < g["exponent"] < 1.0  # the constant 50 µs makes small Bundles a little dearer per entry
    quadratic = {str(n): {"entries": n, "call_median_ms": 0.001 * n * n} for n in (10, 100, 1000)}
    assert abs(figures.growth(quadratic)["exponent"] - 2.0) < 1e-9  # type: ignore[index]


def test_the_chart_draws_one_line_per_contender_that_ran() -> None:
    ran = {"status": "ran", "contender": "a & b (details)", "sizes": {
        "1": {"entries": 1, "median_us": 300.0}, "1 (invalid)": {"entries": 1, "median_us": 9.0},
        "10": {"entries": 10, "median_us": 250.0}, "1000": {"entries": 1000, "median_us": 240.0}}}
    drawn = chart.svg("t", {"x": ran, "y": {"status": "not run: no node", "contender": "y"}})
    root = ET.fromstring(drawn)  # noqa: S314 - our own output
    (line,) = root.findall(f"{SVG}polyline")
    assert len(line.get("points", "").split()) == 3  # invalid singles are not a point of the curve
    assert any(t.text == "a & b" for t in root.iter(f"{SVG}text"))  # escaped, without the parenthesis
    rotated = ran | {"sizes": ran["sizes"] | {"1 (rotation)": {"entries": 1, "median_us": 330.0}}}
    (line,) = ET.fromstring(chart.svg("t", {"x": rotated})).findall(f"{SVG}polyline")  # noqa: S314 - ours
    assert len(line.get("points", "").split()) == 3  # one point at 1 entry: the rotation, not also the repeated


def test_bundle_entries_are_distinct_copies_of_the_examples() -> None:
    examples: list[dict[str, Any]] = [{"resourceType": "Patient", "id": "p"},
                                      {"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/p"}}]
    b = bundles.bundle(examples, 5)
    urls = [e["fullUrl"] for e in b["entry"]]
    assert len(set(urls)) == 5 and urls[2] == f"{bundles.BASE}/Patient/p-1"
    assert b["entry"][3]["resource"] == {"resourceType": "Observation", "id": "o-1", "subject": {"reference": "Patient/p"}}
    assert examples[0] == {"resourceType": "Patient", "id": "p"}  # the examples are not changed


def test_targets_say_how_far_off_and_name_the_largest_gap() -> None:
    files = [{"kind": "valid", "profile": targets.MA_PROFILE}, {"kind": "valid", "profile": None}]
    # one file repeated: 500 and 100 µs; in rotation: 600 and 200 µs (no memory of the last call to find)
    rotation = {"order": [0, 1], "rounds": 5, "results": [{"median_ns": 600_000, "calls": 5, "errors": False},
                                                         {"median_ns": 200_000, "calls": 5, "errors": False}]}
    ours = {"status": "ran", "peak_rss_kib": 100_000, "results": [{"median_ns": 500_000}, {"median_ns": 100_000}],
            "rotation": rotation, "sizes": {"1": {"median_us": 120.0, "files": 2},
                                            "1 (rotation)": {"median_us": 140.0, "files": 2},
                                            "10": {"median_us": 450.0}}}
    hapi = {"status": "ran", "sizes": {"1": {"median_us": 5_000.0}, "10": {"median_us": 4_500.0}}}
    rows = targets.check({"corpus": {"files": files}, "contenders": {"ours": ours, "hapi": hapi}})
    assert [r["verdict"] for r in rows] == ["PASS", "MISS", "MISS", "MISS", "PASS"]
    assert rows[0]["off_by"] == pytest.approx(140 / 150)  # judged in rotation, not on the repeated 120 µs
    assert "in rotation" in rows[0]["target"] and "(one file repeated: 120 µs)" in rows[0]["measured"]
    assert rows[1]["off_by"] == 2.0 and "(in rotation: 600 µs)" in rows[1]["measured"]  # 500 µs against 250
    assert rows[2]["off_by"] == 1.125  # 450 µs an entry against the same two examples in rotation, (600 + 200) / 2
    assert "singles in rotation" in rows[2]["target"]
    assert rows[3]["off_by"] == 2.0 and "10.0× at the worst size (10)" in rows[3]["measured"]
    assert targets.markdown(rows)[-1].startswith("Largest gap: ≤ 250 µs")
    rows = targets.check({"corpus": {"files": files},
                          "contenders": {"ours": ours, "hapi": {"status": "not run: no java"}}})
    assert rows[3]["verdict"] == "NOT RUN"
    # with pairs (rule 4) the Bundle-entry target is their median ratio, with the instructions' beside it if counted
    paired = ours | {"entry_ratios": {"10": {"pairs": 9, "ratio_median": 0.98, "ratio_p25": 0.96, "ratio_p75": 1.01},
                                      "100": {"pairs": 0, "why": "none"}}}
    rows = targets.check({"corpus": {"files": files}, "contenders": {"ours": paired, "hapi": hapi},
                          "instructions": {"ratios": {"10": 1.0021}}})
    assert rows[2]["verdict"] == "NOT RUN" and "NOT RUN at 100 (no pairs)" in rows[2]["measured"]  # not judged
    assert "10: 0.98× (0.96-1.01, 9 pairs)" in rows[2]["measured"] and "10: 1.002×" in rows[2]["measured"]
    paired["entry_ratios"].pop("100")  # every size of ours paired
    rows = targets.check({"corpus": {"files": files}, "contenders": {"ours": paired, "hapi": hapi}})
    assert rows[2]["off_by"] == 0.98 and rows[2]["verdict"] == "PASS" and "in pairs" in rows[2]["target"]
    # results of a run without the rotation judge neither target on the repeated files
    older = ours | {"rotation": None, "sizes": {k: v for k, v in ours["sizes"].items() if k != "1 (rotation)"}}
    rows = targets.check({"corpus": {"files": files}, "contenders": {"ours": older, "hapi": hapi}})
    assert [rows[0]["verdict"], rows[2]["verdict"]] == ["NOT RUN", "NOT RUN"]


def test_a_slow_contender_is_called_no_more_once_its_calls_took_the_time_cap() -> None:
    def slow(text: str) -> list[str]:
        time.sleep(0.03)
        return ["an error"]

    capped = child._Series()
    child._repeat(slow, "{}", capped, 20, 0, int(0.1e9))  # 20 calls wanted, 0.6 s: the cap stops it sooner
    assert 1 <= capped.calls <= 5 and capped.to_json()["errors"] and capped.to_json()["median_ns"] >= 0.03e9
    child._repeat(slow, "{}", capped, 20, 0, int(0.1e9))  # a later round: the cap is spent, no call
    assert capped.calls <= 5 and len(capped.medians) == 1
    uncapped = child._Series()
    child._repeat(slow, "{}", uncapped, 3, 0, int(60e9))
    assert uncapped.calls == 3
    once = child._Series()
    child._repeat(slow, "{}", once, 3, 0, int(0.01e9))
    assert once.calls == 1  # one call past the cap: no second


def test_instructions_are_the_bundles_over_their_singles_summed_over_the_counted_pairs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/instructions.py: per Bundle a dump of its untimed calls, then REPS pairs of dumps (Bundle, singles)."""
    files = [{"entries": 1}, {"entries": 10}, {"entries": 100}]
    pairs = [{"bundle": 1, "singles": [0] * 10}, {"bundle": 2, "singles": [0] * 100}]
    monkeypatch.setattr(instructions.shutil, "which", lambda name: None)
    assert instructions.count(files, pairs)["status"] == "not counted: valgrind is not on PATH"
    monkeypatch.setattr(instructions.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(instructions.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0))
    monkeypatch.setattr(instructions, "_totals", lambda folder: [9, 100, 98, 102, 100, 7, 990, 1000, 1010, 1000, 3])
    out = instructions.count(files, pairs)
    assert out["instructions"] == {"10": [100, 98, 102, 100], "100": [990, 1000, 1010, 1000]}
    assert out["ratios"] == {"10": 202 / 198, "100": 1.0}
    monkeypatch.setattr(instructions, "_totals", lambda folder: [9, 100, 98])
    assert instructions.count(files, pairs)["status"] == "not counted: 3 dumps"
