"""The valid singles in rotation (bench/protocol.py rule 3) in every contender's runner: bench/child.py (ours,
fhircraft, the floors), bench/medplum/validate.mjs (both Medplum rows) and bench/java/BenchMain.java (HAPI).
Each runner gets a small manifest through bench/contenders.run_child, as make bench hands it the whole corpus,
and must report each file of the rotation, in the rotation's order, with its calls and its verdict."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from bench import bundles, child, contenders, corpus, figures, protocol
from service.resources import profiles_dir

#: small enough for a test: a short warm-up and 5 ms a file, in two rounds
TINY = protocol.Settings(window=2, max_s=1.0, min_pass_s=0.005, per_file_s=0.005, min_calls=2, rounds=2, pair_s=0.005,
                        min_pairs=2)


def _plan(tmp_path: Path) -> contenders.Plan:
    """Three valid singles, one invalid, a Bundle of 3: the shape of make bench's corpus, small."""
    valid, invalid = corpus.valid_paths()[:3], corpus.invalid_paths()[:1]
    files = [bundles.File(p.stem, "valid", 1, str(p), None) for p in valid]
    files += [bundles.File(p.stem, "invalid", 1, str(p), None) for p in invalid]
    doc = bundles.bundle([json.loads(p.read_text(encoding="utf-8")) for p in valid], 3)
    (tmp_path / "bundle-3.json").write_text(json.dumps(doc), encoding="utf-8")
    files.append(bundles.File("bundle-3", "bundle", 3, str(tmp_path / "bundle-3.json"), None))
    profiles = sorted(str(p) for p in profiles_dir().glob("StructureDefinition-*.json"))
    return contenders.Plan(files, profiles, corpus.conformance_dir(tmp_path / "ig"), TINY)


def _assert_rotated(report: dict[str, Any], plan: contenders.Plan) -> None:
    assert report["status"] == "ran", report.get("stderr") or report["status"]
    rotation = report["rotation"]
    assert rotation["order"] == plan.rotation() == [0, 1, 2]  # the valid singles, in the Bundle's order
    assert rotation["rounds"] >= TINY.min_calls and len(rotation["results"]) == 3
    assert rotation["seconds"] >= 3 * TINY.per_file_s  # the time the three files had alone, in all
    for mine, alone in zip(rotation["results"], report["results"][:3], strict=True):
        assert mine["calls"] == rotation["rounds"] and mine["median_ns"] > 0
        assert mine["errors"] == alone["errors"]  # the same verdict in rotation as the file repeated
    row = figures.rotation_row(rotation)
    assert row is not None and row["files"] == 3 and row["reps"] == rotation["rounds"]
    # rule 4: the Bundle of 3 in pairs with its three entries' singles, each side timed
    assert plan.pairs() == [{"bundle": 4, "singles": [0, 1, 2]}]
    (pairs,) = report["pairs"]
    assert pairs["bundle"] == 4 and len(pairs["bundle_ns"]) == len(pairs["singles_ns"]) >= TINY.min_pairs
    assert all(t > 0 for t in pairs["bundle_ns"] + pairs["singles_ns"])
    ratios = figures.entry_ratios([bundles.File(**f) for f in map(bundles.File.to_json, plan.files)], report["pairs"])
    assert ratios["3"]["pairs"] == len(pairs["bundle_ns"]) and ratios["3"]["ratio_median"] > 0


def test_rotate_calls_each_file_in_turn_never_the_same_twice_in_a_row() -> None:
    called: list[str] = []

    def check(text: str) -> list[str]:
        called.append(text)
        time.sleep(0.001)
        return ["bad"] if text == "c" else []

    turns = [child._Series() for _ in range(3)]
    began = time.perf_counter()
    passes = child._rotate(check, ["a", "b", "c", "d"], [2, 0, 3], turns, 3, int(3 * 0.004e9), int(60e9))
    assert time.perf_counter() - began >= 3 * 0.004  # the time each file would have had alone, for each
    assert passes >= 3 and called == ["c", "a", "d"] * passes
    assert all(x != y for x, y in zip(called, called[1:], strict=False))
    results = [t.to_json() for t in turns]
    assert [r["errors"] for r in results] == [True, False, False] and results[0]["messages"] == ["bad"]
    assert all(r["calls"] == passes for r in results)


def test_the_rows_are_measured_in_alternated_rounds() -> None:
    """Rules 2 and 3 in rounds (bench/protocol.py): round 1 the files in order then the rotation, round 2 the
    rotation then the files in reverse order, round 3 as round 1; each row's calls split over the rounds."""
    called: list[str] = []

    def check(text: str) -> list[str]:
        called.append(text)
        time.sleep(0.0005)
        return []

    settings = TINY.to_json() | {"per_file_s": 0.003, "min_calls": 3, "rounds": 3}
    results, rotation = child.measure(check, ["a", "b", "c"], [1, 2], settings)
    assert re.fullmatch(r"a+b+c+(bc)+c+b+a+b+c+(bc)+", "".join(called))
    assert rotation["timed_rounds"] == 3 and rotation["order"] == [1, 2]
    for r in results + rotation["results"]:
        assert len(r["round_medians_ns"]) == 3 and r["calls"] >= 3
    assert rotation["rounds"] >= 3 and all(r["calls"] == rotation["rounds"] for r in rotation["results"])


def test_a_bundle_and_its_singles_take_turns_at_going_first_in_pairs() -> None:
    """Rule 4 (bench/protocol.py): one call of the Bundle and one pass over its singles make a pair, the Bundle first in
    the first pair and the singles first in the next; a Bundle whose pairs would take longer than pairs_cap_s by its
    files' medians gets none."""
    called: list[str] = []

    def check(text: str) -> list[str]:
        called.append(text)
        time.sleep(0.0005)
        return []

    settings = TINY.to_json() | {"pair_s": 0.0, "min_pairs": 4, "pairs_cap_s": 1.0}
    results = [{"median_ns": 1e6}, {"median_ns": 1e6}, {"median_ns": 2e6}, {"median_ns": 1e9}]
    pairs = child.pair(check, ["a", "b", "B", "S"], [{"bundle": 2, "singles": [0, 1]},
                                                      {"bundle": 3, "singles": [0, 1]}], results, settings)
    assert "".join(called) == "Bab" "abB" "Bab" "abB"  # the slow Bundle S: 4 pairs of over 1 s would pass the cap
    assert [len(p["bundle_ns"]) for p in pairs] == [4, 0] and len(pairs[0]["singles_ns"]) == 4
    assert min(pairs[0]["bundle_ns"]) >= 0.0005e9 and min(pairs[0]["singles_ns"]) >= 2 * 0.0005e9
    files = [bundles.File("a", "valid", 1, "a", None), bundles.File("b", "valid", 1, "b", None),
             bundles.File("B", "bundle", 2, "B", None), bundles.File("S", "bundle", 20, "S", None)]
    pairs[0] |= {"bundle_ns": [100, 300, 200, 400], "singles_ns": [100, 100, 100, 100]}
    rows = figures.entry_ratios(files, pairs)
    assert rows["2"] | {"bundle_us_per_entry": 0} == {"entries": 2, "pairs": 4, "ratio_median": 2.5,
                                                        "ratio_p25": 1.75, "ratio_p75": 3.25,
                                                        "bundle_us_per_entry": 0, "singles_us_per_entry": 0.05}
    assert rows["20"]["pairs"] == 0 and "pairs_cap_s" in rows["20"]["why"]


def test_a_files_median_is_the_median_of_its_rounds_medians() -> None:
    """A round slowed by other work on the machine moves neither row: it is the odd one out of the rounds."""
    series = child._Series()
    for times in ([1000, 1100, 900], [9000, 9900, 8000], [1200, 1300, 1250]):
        series.close(times)
    out = series.to_json()
    assert out["round_medians_ns"] == [1000, 9000, 1250] and out["median_ns"] == 1250
    assert out["p95_ns"] == child._quantile(sorted([1090, 9810, 1295]), 0.5)


def test_the_python_runner_reports_the_rotation(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    _assert_rotated(contenders.run_child("ours", plan), plan)


@pytest.mark.peer
def test_the_medplum_runner_reports_the_rotation_in_both_modes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("node") is None:  # as the Medplum peer's tests: skipped with the reason, failed on CI
        if os.environ.get("CI") == "true":
            pytest.fail("node is not on PATH")
        pytest.skip("node is not on PATH")
    if not (contenders.MEDPLUM / "node_modules" / "@medplum" / "core").is_dir():
        # make test installs the Medplum peer (the same @medplum/core and definitions, 4.5.2); make bench installs
        # bench/medplum's own: run the bench's script beside the peer's packages
        from peers.medplum_server import PEER_DIR, install
        install()
        here = tmp_path / "medplum"
        here.mkdir()
        shutil.copy(contenders.MEDPLUM / "validate.mjs", here)
        (here / "node_modules").symlink_to(PEER_DIR / "node_modules")
        monkeypatch.setattr(contenders, "MEDPLUM", here)
    plan = _plan(tmp_path)
    for name in ("medplum", "medplum-parsed"):
        _assert_rotated(contenders.run_child(name, plan), plan)


@pytest.mark.peer
@pytest.mark.xdist_group("hapi-validator")  # builds the tests' HAPI harness, as tests/peers/test_hapi_validator.py
def test_the_hapi_runner_reports_the_rotation(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    report = contenders.run_child("hapi", plan)
    _assert_rotated(report, plan)
    assert report["results"][3]["errors"]  # the invalid example: HAPI's verdict came through
