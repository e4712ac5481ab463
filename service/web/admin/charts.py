"""Chart geometry for a patient's course, drawn as SVG by templates/admin/_chart.html (no JavaScript).

Every series has its own marker shape and dash pattern and is labelled in a legend, so the charts read
without colour; each point carries its value as a tooltip, and the page repeats the data in tables.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from service.admin.course import Course, Session
from service.domain.rules import ESKETAMINE_PREDOSE_BP

WIDTH, HEIGHT = 920, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 230, 24, 56
#: The narrowest band (session) that still gets its own label, and the narrowest that gets phase labels.
MIN_LABEL_PX, MIN_PHASE_PX = 60, 70
#: Response: a ≥50% decrease from the baseline score (clinical.md §6, PMC8382305; Talati 2019 for MADRS,
#: ELEKT-D for QIDS-SR16). Drawn at half the baseline.
RESPONSE_FRACTION = 0.5
#: Remission cut-offs, score at or below (clinical.md §6). MADRS ≤10 as in KetECT (PMC9154276); a 17-trial
#: meta-analysis used ≤12, so protocols differ. PHQ-9 <5 is the 0–4 "none" band (Kroenke 2001); clinical.md
#: marks an explicit PHQ-9 remission source UNCONFIRMED, so the label names the band. No sourced cut-off for
#: C-SSRS, QIDS-SR16, HAM-D17 or GAD-7: none is drawn.
REMISSION = {"madrs": (10, "remission ≤ 10 (KetECT)"),
             "phq9": (4, "remission < 5 ('none' band)")}
#: Instruments measured by response only when a plan sets that goal (the definition is generic).
RESPONSE_ALWAYS = {"madrs", "phq9", "qids-sr16"}
LABELS = {"phq9": "PHQ-9", "madrs": "MADRS", "cssrs": "C-SSRS", "qids-sr16": "QIDS-SR16", "hamd17": "HAM-D17",
          "gad7": "GAD-7"}
RANGES = {"phq9": 27, "madrs": 60, "cssrs": 5, "qids-sr16": 27, "gad7": 21}


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    value: str          # the tooltip and the data-value attribute
    label: str          # what the point is: `S2 intra 09:40`


@dataclass
class Series:
    key: str            # css class and test hook: systolic, diastolic, heart-rate, madrs, …
    name: str           # legend text
    shape: str          # triangle-up | triangle-down | circle | square | diamond
    dash: str           # SVG stroke-dasharray ('' = solid)
    lines: list[list[Point]] = field(default_factory=list)   # polylines; a new one per session

    @property
    def points(self) -> list[Point]:
        return [p for line in self.lines for p in line]


@dataclass(frozen=True)
class Rule:
    """A horizontal reference line (threshold) or a vertical guide (session, adverse event)."""

    at: float
    label: str
    dash: str
    key: str


@dataclass
class Chart:
    id: str
    title: str
    desc: str
    y_label: str
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    series: list[Series]
    thresholds: list[Rule] = field(default_factory=list)
    guides: list[Rule] = field(default_factory=list)
    events: list[Rule] = field(default_factory=list)    # adverse events, on the x axis
    bands: list[tuple[float, float, str]] = field(default_factory=list)  # (x0, x1, session label)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def _scale(lo: float, hi: float, top: float, bottom: float) -> tuple[float, float]:
    """(a, b) so that y = a * value + b maps [lo, hi] onto [bottom, top]."""
    a = (top - bottom) / (hi - lo)
    return a, bottom - a * lo


def _ticks(lo: int, hi: int, step: int, a: float, b: float) -> list[tuple[float, str]]:
    return [(a * v + b, str(v)) for v in range(lo, hi + 1, step)]


def vitals_chart(course: Course) -> Chart | None:
    """Blood pressure and heart rate at each reading of each session, sessions side by side."""
    sessions = [s for s in course.sessions if s.readings]
    if not sessions:
        return None
    values = [v for s in sessions for r in s.readings for v in (r.systolic, r.diastolic, r.heart_rate) if v]
    lo = min(40, 20 * math.floor(min(values, default=40) / 20))
    hi = max(180, 20 * math.ceil(max(values, default=180) / 20))
    a, b = _scale(lo, hi, TOP, HEIGHT - BOTTOM)
    band = (WIDTH - RIGHT - LEFT) / len(sessions)
    series = [Series("systolic", "Systolic BP (mmHg)", "triangle-up", ""),
              Series("diastolic", "Diastolic BP (mmHg)", "triangle-down", "7 4"),
              Series("heart-rate", "Heart rate (/min)", "circle", "2 3")]
    chart = Chart("vitals-chart", "Blood pressure and heart rate in each session",
                  _vitals_desc(sessions), "mmHg · beats/min", _ticks(lo, hi, 20, a, b), [], series)
    every = math.ceil(MIN_LABEL_PX / band)  # many sessions: label every n-th band so labels never overlap
    for i, s in enumerate(sessions):
        x0 = LEFT + i * band
        chart.bands.append((x0, x0 + band, f"S{s.number} {s.started_at:%m-%d}" if i % every == 0 else ""))
        step = band / (len(s.readings) + 1)
        for series_, attr in zip(series, ("systolic", "diastolic", "heart_rate"), strict=True):
            line = [Point(x0 + (j + 1) * step, a * v + b, str(v), f"S{s.number} {r.phase} {r.at:%H:%M}")
                    for j, r in enumerate(s.readings) if (v := getattr(r, attr)) is not None]
            if line:
                series_.lines.append(line)
        if band >= MIN_PHASE_PX:
            chart.x_ticks += [(x0 + (j + 1) * step, r.phase) for j, r in enumerate(s.readings)]
    if any(s.medication == "esketamine" for s in sessions):
        systolic, diastolic = ESKETAMINE_PREDOSE_BP  # the label's pre-dose guide the rules check too
        chart.thresholds += [Rule(a * systolic + b, f"systolic {systolic}: esketamine guide", "10 3 2 3",
                                  "bp-guide"),
                             Rule(a * diastolic + b, f"diastolic {diastolic}: esketamine guide", "10 3 2 3",
                                  "bp-guide")]
    where = {s.external_id: LEFT + (i + 0.5) * band for i, s in enumerate(sessions)}
    chart.events = [Rule(where[ae.session], f"AE: {ae.term}", "", "adverse-event")
                    for ae in course.adverse_events if ae.session in where]
    return chart


def _vitals_desc(sessions: list[Session]) -> str:
    parts = []
    for s in sessions:
        readings = ", ".join(f"{r.phase} {r.systolic or '–'}/{r.diastolic or '–'} mmHg HR {r.heart_rate or '–'}"
                             for r in s.readings)
        parts.append(f"Session {s.number}: {readings}.")
    return " ".join(parts)


def score_charts(course: Course) -> list[Chart]:
    """One panel per outcome instrument, on one time axis with the sessions and adverse events marked."""
    instruments = [i for i in LABELS if any(s.instrument == i for s in course.scores)]
    if not instruments:
        return []
    moments = [s.at for s in course.scores] + [s.started_at for s in course.sessions] + \
              [a.onset_at for a in course.adverse_events]
    start, end = min(m.timestamp() for m in moments), max(m.timestamp() for m in moments)
    pad = max((end - start) * 0.04, 43200)
    x_a, x_b = _scale(start - pad, end + pad, WIDTH - RIGHT, LEFT)

    def x(moment: datetime) -> float:
        return x_a * moment.timestamp() + x_b

    return [_score_chart(course, i, n, x) for n, i in enumerate(instruments)]


SHAPES = ("square", "circle", "diamond", "triangle-up", "triangle-down", "circle")
DASHES = ("", "7 4", "2 3", "10 3 2 3", "4 2", "1 4")


def _score_chart(course: Course, instrument: str, n: int, x: Callable[[datetime], float]) -> Chart:
    scores = [s for s in course.scores if s.instrument == instrument]
    label = LABELS[instrument]
    hi = RANGES.get(instrument) or max(10, *(s.value for s in scores))
    a, b = _scale(0, hi, TOP, HEIGHT - BOTTOM)
    step = max(1, round(hi / 6))
    series = Series(instrument, f"{label} score", SHAPES[n % len(SHAPES)], DASHES[n % len(DASHES)])
    series.lines.append([Point(x(s.at), a * s.value + b, str(s.value), f"{s.at:%Y-%m-%d} ({s.source})")
                         for s in scores])
    desc = f"{label} scores: " + ", ".join(f"{s.value} on {s.at:%Y-%m-%d}" for s in scores) + "."
    chart = Chart(f"score-chart-{instrument}", f"{label} across the course", desc, label,
                  _ticks(0, hi, step, a, b), [], [series])
    baseline = course.baseline(instrument)
    if baseline and (instrument in RESPONSE_ALWAYS or course.has_goal(instrument)):
        level = baseline * RESPONSE_FRACTION
        chart.thresholds.append(Rule(a * level + b, f"response ≤ {level:g} (50% of {baseline})", "7 4",
                                     "response"))
    if instrument in REMISSION:
        cut, text = REMISSION[instrument]
        chart.thresholds.append(Rule(a * cut + b, text, "10 3 2 3", "remission"))
    chart.guides = [Rule(x(s.started_at), f"S{s.number}", "1 3", "session") for s in course.sessions]
    chart.events = [Rule(x(ae.onset_at), f"AE: {ae.term}", "", "adverse-event") for ae in course.adverse_events]
    days = sorted({s.at.date() for s in scores} | {s.started_at.date() for s in course.sessions})
    chart.x_ticks = [(x(datetime.combine(d, datetime.min.time(), scores[0].at.tzinfo)), f"{d:%m-%d}")
                     for d in _thin(days, 10)]
    return chart


def _thin(items: list[date], most: int) -> list[date]:
    """At most `most` items, evenly picked, first and last kept."""
    if len(items) <= most:
        return items
    step = (len(items) - 1) / (most - 1)
    return [items[round(i * step)] for i in range(most)]
