"""The one protocol every validator contender follows, and the figures that check it was followed.

Every contender (ours, HAPI, Medplum as shipped and with the profile parsed once, fhircraft, the floors) runs
in its own process, pinned to the same single core (bench/contenders.py sets the affinity before exec, so the
JVM and Node see one CPU as the Python children do), and is handed the same manifest:

1. warm-up passes: one pass calls every warm-up file once (the single resources and the smallest Bundle),
   repeated until the pass lasted at least `min_pass_s` (a pass's value is its time per round, so that a
   contender taking microseconds is not judged on scheduler noise); passes go on until the pass time has stopped
   changing: the median of the last `window` passes differs from the median of the `window` before them by less
   than `tolerance` (< 5 % change over 10 passes: a JIT still compiling keeps the median falling, while one pass
   slowed by another process on this shared machine moves neither median), or until `max_s` - then the
   contender is reported as not steady, with its pass count, never silently;
2. then every file is called for the same `per_file_s` (at least `min_calls` calls, but no more once its calls
   have taken `slow_file_s`), and its median and p95 are taken from those calls only: warm-up calls never
   enter a median;
3. and the valid singles in rotation: passes of one call of each valid single, in the order the Bundles cycle
   through them (bench/bundles.py), until every file has had `min_calls` calls and the passes have taken
   `per_file_s` per file (the same time each file got alone); each file's median from its calls in rotation.
   Rule 2 calls one document over and over, so whatever a validator remembers of a document (ours keeps
   per-element memories of clean texts, codings, references and generated walks) is hit on every call; in
   rotation each call is a different document, as in a Bundle or a server's stream of requests. Both rows are
   printed, labelled; the validator target for a single is judged on the rotation, for a Bundle entry on rule 4.

4. and each Bundle in pairs with the same resources alone: one call of the Bundle and one pass of one call of each
   single it holds, in its order (the rotation, cycled to the Bundle's size), each side timed as a whole, the
   Bundle first in one pair and the singles first in the next, until `min_pairs` pairs and `pair_s`, at most
   `max_pairs`, none more once the pairs have taken `pairs_cap_s`; a Bundle whose `min_pairs` pairs would take
   longer than that (by the rule-2 medians of its files) gets none and is reported so (HAPI's and fhircraft's
   largest Bundles: make bench must stay within its 15 minutes). A pair's ratio is the
   Bundle's time over the singles' time: both sides run within the same moment, so the host's drift (another
   process on this shared machine, a slower stretch) moves both and cancels in the ratio. The target "a Bundle
   entry no dearer than the same resources alone" is judged on the median of the pairs' ratios, printed with
   their interquartile range; a Bundle's own row (rule 2) and the rotation's (rule 3) are unchanged.

Rules 2 and 3 are measured together in `rounds` rounds, each with its share of the time (and of `min_calls`):
rounds 1, 3, ... call the files one after another in the corpus's order and then run the rotation, rounds 2, 4,
... run the rotation first and then the files in reverse order. A file's median (and p95) is the median of its rounds'
medians (p95s). Measured one after the other, each row and each file always ran after the same work and in its
own stretch of time, so a stretch slowed by other work on this shared machine moved one row and not the other
(the quiet bench of 2026-12-05: json.loads 1.5x slower on every file repeated than in rotation); in rounds both
rows share every stretch, and the median over rounds leaves out the one that was slowed.

The children (bench/child.py, bench/medplum/validate.mjs, bench/java/BenchMain.java) each implement rules 1-4 in
their own language; the parent recomputes `steady_after` from the pass values they report with the function
below, so the rule that is printed is the rule that is tested (tests/bench/test_protocol.py).

Verdict agreement: a file's verdict is "has an error or fatal issue". Every contender's verdicts are compared
with HAPI's, file by file, and printed beside each time; the "agreed" row times every contender only on the
files where all the profile validators agree with HAPI (the floors, which check no profile, are timed on
those files too but do not decide which they are)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

FLOORS = ("fhir.resources", "json.loads")  # check no profile: timed, but not asked to agree


@dataclass(frozen=True)
class Settings:
    window: int = 10  # passes that must be steady
    tolerance: float = 0.05  # (max - min) / median of those passes
    min_pass_s: float = 0.05  # a pass repeats the warm-up set until it lasted this long
    max_s: float = 120.0  # warm-up gives up (reported as not steady) after this long
    per_file_s: float = 0.1  # each file is timed for this long after warm-up
    min_calls: int = 3  # ... and at least this many calls
    slow_file_s: float = 10.0  # a file whose calls take longer than this is called no more: make bench must stay
    # under 15 minutes. The 1,000-entry Bundle on 2026-12-06: fhircraft ~20-24 s a call (2 calls at 20 s, 1 now),
    # HAPI ~6 s (3 calls, 2 now); the margin was 13 s (887 s), and HAPI's and fhircraft's parts vary by ~30 s a run
    rounds: int = 3  # rules 2 and 3 measured in this many rounds, alternated (at least one call a file each)
    pair_s: float = 1.0  # rule 4: each Bundle's pairs with its singles take this long ...
    min_pairs: int = 4  # ... and at least this many pairs (even: as many with the Bundle first as the singles)
    max_pairs: int = 1000  # ... but no more (json.loads pairs a Bundle of 10 in microseconds)
    pairs_cap_s: float = 10.0  # ... nor once they took this long; none when min_pairs would take longer

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


FULL = Settings()
#: QUICK=1: a smoke run of the whole pipeline (< 2 min on an idle 2-core machine), its medians not for quoting. One
#: call a file at the least: HAPI, barely warmed in 5 s, took 52 of the run's 100 s of CPU, most of it on its 3
#: calls of each of the 163 files (2026-12-05, 11:23, load 13-16); with one, 39 s. The full protocol is unchanged.
QUICK = Settings(window=5, max_s=5.0, per_file_s=0.01, min_pass_s=0.02, min_calls=1, rounds=2, pair_s=0.1)


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def change(values: Sequence[float], window: int) -> float | None:
    """|median of the last `window` values - median of the `window` before| / the latter; None until there are
    2 × window values (or when the earlier median is 0)."""
    if window < 1 or len(values) < 2 * window:
        return None
    last, before = median(values[-window:]), median(values[-2 * window:-window])
    return abs(last - before) / before if last is not None and before else None


def is_steady(values: Sequence[float], window: int, tolerance: float) -> bool:
    """Whether the pass values have stopped changing: the last `window` passes' median is within `tolerance` of
    the median of the `window` passes before them."""
    c = change(values, window)
    return c is not None and c < tolerance


def steady_after(values: Sequence[float], window: int, tolerance: float) -> int | None:
    """The number of passes after which the values first were steady (the warm-up the contender needed), or
    None if they never were."""
    return next((n for n in range(2 * window, len(values) + 1) if is_steady(values[:n], window, tolerance)), None)


def warmup_summary(pass_ms: Sequence[float], settings: Settings) -> dict[str, Any]:
    """What the tables print about one contender's warm-up."""
    after = steady_after(pass_ms, settings.window, settings.tolerance)
    return {"passes": len(pass_ms), "steady_after": after, "steady": after is not None,
            "first_pass_ms": pass_ms[0] if pass_ms else None,
            "steady_pass_ms": median(pass_ms[-settings.window:]), "last_change": change(pass_ms, settings.window)}


def agreement(verdicts: Sequence[bool], oracle: Sequence[bool], chosen: Sequence[int]) -> dict[str, int]:
    """How many of the `chosen` files get the oracle's verdict."""
    return {"agree": sum(verdicts[i] == oracle[i] for i in chosen), "of": len(chosen)}


def agreed_files(runs: dict[str, dict[str, Any]], oracle: str = "hapi") -> list[int] | None:
    """Indexes of the files where every profile validator that ran (the floors excepted) has the oracle's
    verdict; None when the oracle did not run."""
    ref = runs.get(oracle, {})
    if ref.get("status") != "ran":
        return None
    truth = [r["errors"] for r in ref["results"]]
    judges = [run for name, run in runs.items() if name not in FLOORS and name != oracle and run.get("status") == "ran"]
    return [i for i, verdict in enumerate(truth) if all(run["results"][i]["errors"] == verdict for run in judges)]
