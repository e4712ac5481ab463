"""Chart geometry for a patient's course, drawn as SVG by templates/admin/_chart.html (no JavaScript).

Every series has its own marker shape and dash pattern and is labelled in a legend, so the charts read
without colour; each point carries its value as a tooltip, and the page repeats the data in tables.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from service.admin.course import Course, Session
from service.domain.session_rules import ESKETAMINE_PREDOSE_GUIDE as ESKETAMINE_PREDOSE_BP

WIDTH, HEIGHT = 920, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 230, 24, 56
#: The narrowest band (session) that still gets its own label; the least room a phase word gets under a reading;
#: the least distance between two date ticks and between two session guides' labels (11 px text: `03-19` is
#: about 32 px wide, `S12` about 20 px).
MIN_LABEL_PX, MIN_PHASE_STEP_PX, MIN_TICK_PX, MIN_GUIDE_PX = 76, 44, 44, 26
#: Response: a ≥50% decrease from the baseline score (clinical.md §6, PMC8382305; Talati 2019 for MADRS,
#: ELEKT-D for QIDS-SR16). Drawn at half the baseline.
RESPONSE_FRACTION = 0.5
#: Remission cut-offs, score at or below (clinical.md §6). MADRS ≤10 as in KetECT (PMC9154276); a 17-trial
#: meta-analysis used ≤12, so protocols differ. PHQ-9 <5 is the 0–4 "none" band (Kroenke 2001); clinical.md
#: marks an explicit PHQ-9 remission source UNCONFIRMED, so the label names the band. HAM-D17 ≤ 7 (clinical.md §3
#: Depression scales, Zimmerman 2013; §6, the meta-analysis's HDRS cut-off), the plan's Goal uses the same. No sourced
#: cut-off for C-SSRS, QIDS-SR16 or GAD-7: none is drawn.
REMISSION = {"madrs": (10, "remission ≤ 10 (KetECT)"),
             "phq9": (4, "remission ≤ 4 ('none' band, 0–4)"),
             "hamd17": (7, "remission ≤ 7")}
#: Instruments measured by response only when a plan sets that goal (the definition is generic).
RESPONSE_ALWAYS = {"madrs", "phq9", "qids-sr16"}
LABELS = {"phq9": "PHQ-9", "madrs": "MADRS", "cssrs": "C-SSRS", "qids-sr16": "QIDS-SR16", "hamd17": "HAM-D17",
          "gad7": "GAD-7"}
RANGES = {"phq9": 27, "madrs": 60, "cssrs": 5, "qids-sr16": 27, "gad7": 21, "hamd17": 52}  # HAM-D17 0–52, §3


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
    level: int = 0      # an adverse event's label row: labels close together stack instead of overlapping
    label_at: float | None = None   # a threshold's label height, when the line's own would overlap another's


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
    scale: tuple[float, float] = (1.0, 0.0)    # y = a * value + b

    def y(self, value: float) -> float:
        return self.scale[0] * value + self.scale[1]


def _scale(lo: float, hi: float, top: float, bottom: float) -> tuple[float, float]:
    """(a, b) so that y = a * value + b maps [lo, hi] onto [bottom, top]."""
    a = (top - bottom) / (hi - lo)
    return a, bottom - a * lo


def _ticks(lo: int, hi: int, step: int, a: float, b: float) -> list[tuple[float, str]]:
    return [(a * v + b, str(v)) for v in range(lo, hi + 1, step)]


def vitals_chart(course: Course) -> Chart | None:
    """Blood pressure at each reading of each session, sessions side by side (heart rate has a chart of its own:
    at most intra-dose readings its values sit where the diastolic ones do, and one marker hid the other)."""
    specs = [(Series("systolic", "Systolic BP (mmHg)", "triangle-up", ""), "systolic"),
             (Series("diastolic", "Diastolic BP (mmHg)", "triangle-down", "7 4"), "diastolic")]
    chart = _session_chart(course, "vitals-chart", "Blood pressure in each session", "mmHg", specs)
    sessions = [s for s in course.sessions if s.readings]
    if chart is not None and any(s.medication == "esketamine" for s in sessions):
        systolic, diastolic = ESKETAMINE_PREDOSE_BP  # the label's pre-dose guide the rules check too
        chart.thresholds = _apart([
            Rule(chart.y(systolic), f"systolic {systolic}: esketamine guide", "10 3 2 3", "bp-guide"),
            Rule(chart.y(diastolic), f"diastolic {diastolic}: esketamine guide", "10 3 2 3", "bp-guide")])
    return chart


def heart_rate_chart(course: Course) -> Chart | None:
    """Heart rate at each reading of each session, on the same session bands as the blood pressure."""
    specs = [(Series("heart-rate", "Heart rate (/min)", "circle", "2 3"), "heart_rate")]
    return _session_chart(course, "heart-rate-chart", "Heart rate in each session", "beats/min", specs)


def _session_chart(course: Course, chart_id: str, title: str, unit: str,
                   specs: list[tuple[Series, str]]) -> Chart | None:
    sessions = [s for s in course.sessions if any(getattr(r, a) is not None for r in s.readings for _, a in specs)]
    if not sessions:
        return None
    values = [v for s in sessions for r in s.readings for _, a in specs if (v := getattr(r, a))]
    lo = min(40, 20 * math.floor(min(values, default=40) / 20))
    hi = max(180 if unit == "mmHg" else 120, 20 * math.ceil(max(values, default=120) / 20))
    a, b = _scale(lo, hi, TOP, HEIGHT - BOTTOM)
    band = (WIDTH - RIGHT - LEFT) / len(sessions)
    chart = Chart(chart_id, title, _vitals_desc(sessions), unit, _ticks(lo, hi, 20, a, b), [],
                  [series for series, _ in specs], scale=(a, b))
    labels = _band_labels(sessions, band)
    for i, s in enumerate(sessions):
        x0 = LEFT + i * band
        chart.bands.append((x0, x0 + band, labels[i]))
        step = band / (len(s.readings) + 1)
        for series, attr in specs:
            line = [Point(x0 + (j + 1) * step, a * v + b, str(v), f"S{s.number} {r.phase} {r.at:%H:%M}")
                    for j, r in enumerate(s.readings) if (v := getattr(r, attr)) is not None]
            if line:
                series.lines.append(line)
        if step >= MIN_PHASE_STEP_PX:  # room for a word under each reading; a repeated phase is numbered
            chart.x_ticks += [(x0 + (j + 1) * step, name) for j, name in enumerate(_phase_names(s))]
    where = {s.external_id: LEFT + (i + 0.5) * band for i, s in enumerate(sessions)}
    chart.events = _stacked([Rule(where[ae.session], f"AE: {ae.term}", "", "adverse-event")
                             for ae in course.adverse_events if ae.session in where])
    return chart


def _band_labels(sessions: list[Session], band: float) -> list[str]:
    """`S3 03-19` under every n-th band, n chosen so that labels never overlap; sessions on the day already
    labelled say only their number (`S4`), which fits a narrower band."""
    every = math.ceil(MIN_LABEL_PX / band)
    labels, last_day = [], None
    for i, s in enumerate(sessions):
        if i % every:
            labels.append("")
            continue
        day = f"{s.started_at:%m-%d}"
        labels.append(f"S{s.number}" if day == last_day else f"S{s.number} {day}")
        last_day = day
    return labels


def _phase_names(s: Session) -> list[str]:
    """pre, intra, post — and post 2, post 3 when a phase has several readings (they were two unlabelled `post`)."""
    seen: dict[str, int] = {}
    names = []
    for r in s.readings:
        seen[r.phase] = seen.get(r.phase, 0) + 1
        names.append(r.phase if seen[r.phase] == 1 else f"{r.phase} {seen[r.phase]}")
    return names


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
                  _ticks(0, hi, step, a, b), [], [series], scale=(a, b))
    baseline = course.baseline(instrument)
    if baseline and (instrument in RESPONSE_ALWAYS or course.has_goal(instrument)):
        # Scores are whole numbers: a 50% decrease from 19 is 9.5, which only a score of 9 or less reaches.
        level = math.floor(baseline * RESPONSE_FRACTION)
        chart.thresholds.append(Rule(a * level + b, f"response ≤ {level} (50% of {baseline})", "7 4", "response"))
    if instrument in REMISSION:
        cut, text = REMISSION[instrument]
        chart.thresholds.append(Rule(a * cut + b, text, "10 3 2 3", "remission"))
    chart.thresholds = _apart(chart.thresholds)
    sessions = sorted(course.sessions, key=lambda s: s.started_at)
    chart.guides = [Rule(at, f"S{s.number}" if show else "", "1 3", "session")
                    for (at, show), s in zip(_spaced([x(s.started_at) for s in sessions], MIN_GUIDE_PX), sessions,
                                             strict=True)]
    chart.events = _stacked([Rule(x(ae.onset_at), f"AE: {ae.term}", "", "adverse-event")
                             for ae in course.adverse_events])
    days = sorted({s.at.date() for s in scores} | {s.started_at.date() for s in course.sessions})
    ticks = [(at, f"{d:%m-%d}") for d in days  # a day's midnight may fall left of the plot, under the y labels
             if LEFT + MIN_TICK_PX / 2 <= (at := x(datetime.combine(d, datetime.min.time(), scores[0].at.tzinfo)))
             <= WIDTH - RIGHT]
    chart.x_ticks = [t for t, (_, show) in zip(ticks, _spaced([t[0] for t in ticks], MIN_TICK_PX), strict=True)
                     if show]
    return chart


def _apart(thresholds: list[Rule], line_px: float = 13) -> list[Rule]:
    """Threshold labels (beside the plot, at their line's height) at least a text line apart, top to bottom."""
    out: list[Rule] = []
    for t in sorted(thresholds, key=lambda r: r.at):
        y = t.at + 4
        if out and y - (out[-1].label_at or 0) < line_px:
            y = (out[-1].label_at or 0) + line_px
        out.append(Rule(t.at, t.label, t.dash, t.key, t.level, y))
    return out


def _stacked(events: list[Rule]) -> list[Rule]:
    """Adverse-event labels (about 7 px a character) one row up when they would run into a label to their left."""
    out: list[Rule] = []
    for e in sorted(events, key=lambda r: r.at):
        busy = {o.level for o in out if e.at - o.at < 9 + 7 * len(o.label)}
        out.append(Rule(e.at, e.label, e.dash, e.key, next(n for n in range(len(out) + 1) if n not in busy)))
    return out


def _spaced(xs: list[float], gap: float) -> list[tuple[float, bool]]:
    """Each position, and whether its label is drawn: only when at least `gap` px from the last one drawn (so
    labels of sessions or days close together never run into each other: `03-1903-20`)."""
    out, last = [], -math.inf
    for at in xs:
        show = at - last >= gap
        last = at if show else last
        out.append((at, show))
    return out
