"""The validator targets against the compare figures: ≤ 250 µs per ketamine
MedicationAdministration, ≥ 20× faster than HAPI at every input size, < 150 MB resident. Each row says how
far off it is (a factor: 1.00 or less meets the target), so the largest gap can be named."""
from __future__ import annotations

from typing import Any

from bench import stats

MA_PROFILE = "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-administration"


def _row(target: str, measured: str, factor: float | None) -> dict[str, Any]:
    verdict = "NOT RUN" if factor is None else ("PASS" if factor <= 1 else "MISS")
    return {"target": target, "measured": measured, "off_by": factor, "verdict": verdict}


def _administration(res: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    medians = [r["median_ns"] for f, r in zip(res["corpus"]["files"], ours["results"], strict=True)
               if f["kind"] == "valid" and f["profile"] == MA_PROFILE]
    us = (stats.median(medians) or 0.0) / 1e3 if medians else None
    return _row("≤ 250 µs per ketamine MedicationAdministration (parse + validate)",
                f"{us:,.0f} µs, median of {len(medians)} valid examples" if us else "no valid example",
                us / 250 if us else None)


def _versus_hapi(ours: dict[str, Any], hapi: dict[str, Any]) -> dict[str, Any]:
    if hapi["status"] != "ran":
        return _row("≥ 20× faster than HAPI at every size", f"HAPI {hapi['status']}", None)
    ratios = {size: hapi["sizes"][size]["median_us"] / row["median_us"] for size, row in ours["sizes"].items()
              if size in hapi["sizes"] and row["median_us"]}
    size, worst = min(ratios.items(), key=lambda kv: kv[1])
    return _row("≥ 20× faster than HAPI at every size",
                f"{worst:,.1f}× at the worst size ({size}); " + ", ".join(f"{k}: {v:,.1f}×" for k, v in ratios.items()),
                20 / worst)


def check(res: dict[str, Any]) -> list[dict[str, Any]]:
    runs = res["contenders"]
    ours = runs["ours"]
    if ours["status"] != "ran":
        return [_row("every validator target", f"ours {ours['status']}", None)]
    rss = ours.get("peak_rss_kib")
    memory = _row("< 150 MB resident, whole process", f"{rss * 1024 / 1e6:,.0f} MB peak RSS" if rss else "unknown",
                  rss * 1024 / 150e6 if rss else None)
    return [_administration(res, ours), _versus_hapi(ours, runs["hapi"]), memory]


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | measured | verdict | off by |", "| --- | --- | --- | ---: |"]
    for r in rows:
        off = "—" if r["off_by"] is None else f"{r['off_by']:,.2f}×"
        lines.append(f"| {r['target']} | {r['measured']} | {r['verdict']} | {off} |")
    missed = [r for r in rows if r["verdict"] == "MISS"]
    if missed:
        worst = max(missed, key=lambda r: r["off_by"])
        lines += ["", f"Largest gap: {worst['target']} — off by {worst['off_by']:,.1f}×."]
    return lines
