"""The names of a part's results in bench/results/: `<part>-<date>` for a full run, `<part>-quick-<date>` for a QUICK
one. A QUICK run is a smoke test of the pipeline, its figures not for quoting; under the same name it overwrote the
day's full results, which the README's figures (bench/readme.py) and, when HAPI does not run, the open loop's rates
(bench/openloop.py) are read from."""
from __future__ import annotations

from pathlib import Path

QUICK = "quick-"


def stem(folder: Path, part: str, date: str, quick: bool) -> Path:
    """Where a run's results go, without the suffix (.json, .md, .svg follow)."""
    return folder / f"{part}-{QUICK if quick else ''}{date}"


def full_runs(folder: Path, part: str) -> list[Path]:
    """The full runs' JSON results of `part`, oldest first (by modification time)."""
    return sorted(folder.glob(f"{part}-[0-9]*.json"), key=lambda p: p.stat().st_mtime)


def quick_runs(folder: Path, part: str) -> list[Path]:
    """The QUICK runs' JSON results of `part`, oldest first."""
    return sorted(folder.glob(f"{part}-{QUICK}*.json"), key=lambda p: p.stat().st_mtime)
