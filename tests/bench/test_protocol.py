"""The benchmark protocol's logic (bench/protocol.py) and the figures built on it: when a warm-up counts as
steady, which files every validator agrees on, and the agreement printed beside each time. Nothing is timed."""
from __future__ import annotations

from typing import Any

import pytest

from bench import figures, protocol, report
from bench.bundles import File


def test_a_warm_up_is_steady_once_the_pass_time_stops_changing_over_the_window() -> None:
    falling = [4500.0, 3000.0, 2000.0, 1500.0, 1200.0, 1000.0, 900.0, 800.0, 750.0, 720.0]  # a JIT compiling
    warm = [700.0, 690.0, 705.0, 698.0, 702.0] * 2
    passes = falling + warm + warm
    assert protocol.change(passes[:20], 10) == pytest.approx((1100.0 - 700.0) / 1100.0)  # medians 1,100 → 700
    assert not protocol.is_steady(passes[:20], 10, 0.05)  # the last 10 still differ from the 10 while compiling
    # at 24 passes the 10 before the last 10 (1,200 … 698) have the median 735: 700 is 4.8 % below it
    assert protocol.steady_after(passes, 10, 0.05) == 24
    assert protocol.change(passes, 10) == pytest.approx(0.0)


def test_one_pass_slowed_by_another_process_does_not_hide_a_steady_state() -> None:
    passes = [100.0] * 19 + [400.0]  # the machine is shared: one pass waited for a core
    assert protocol.is_steady(passes, 10, 0.05)
    assert protocol.change(passes, 10) == 0.0


def test_a_change_of_five_percent_or_more_is_not_steady() -> None:
    assert protocol.is_steady([100.0] * 10 + [104.9] * 10, 10, 0.05)
    assert not protocol.is_steady([100.0] * 10 + [105.0] * 10, 10, 0.05)
    assert not protocol.is_steady([100.0] * 10 + [94.0] * 10, 10, 0.05)  # still getting faster


def test_a_warm_up_that_keeps_drifting_is_reported_as_never_steady() -> None:
    drifting = [1000.0 * 0.99 ** n for n in range(60)]  # 1 % faster every pass: about 10 % over 10 passes
    summary = protocol.warmup_summary(drifting, protocol.FULL)
    assert summary["steady"] is False and summary["steady_after"] is None and summary["passes"] == 60
    assert summary["last_change"] > 0.05


def test_fewer_than_two_windows_or_a_zero_median_are_never_steady() -> None:
    assert protocol.steady_after([1.0] * 19, 10, 0.05) is None
    assert protocol.steady_after([0.0] * 20, 10, 0.05) is None
    assert protocol.change([], 10) is None and protocol.median([]) is None


def test_the_warm_up_summary_gives_the_first_and_the_steady_pass() -> None:
    summary = protocol.warmup_summary([50.0, 12.0, 10.0, 10.1, 9.9, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0],
                                      protocol.Settings(window=5))
    assert summary == {"passes": 11, "steady_after": 10, "steady": True, "first_pass_ms": 50.0,
                       "steady_pass_ms": 10.0, "last_change": pytest.approx(0.0)}


def _run(verdicts: list[bool], medians: list[float] | None = None, label: str = "c") -> dict[str, Any]:
    medians = medians or [1000.0] * len(verdicts)
    return {"status": "ran", "contender": label, "results": [
        {"errors": v, "median_ns": m, "p95_ns": m, "calls": 3} for v, m in zip(verdicts, medians, strict=True)]}


def test_the_agreed_files_are_those_where_every_profile_validator_has_hapis_verdict() -> None:
    runs = {"hapi": _run([False, True, True, False]), "ours": _run([False, True, True, True]),
            "medplum": _run([False, False, True, False]), "fhircraft": {"status": "not run: QUICK=1"},
            "json.loads": _run([False, False, False, False])}  # a floor: checks no profile, decides nothing
    assert protocol.agreed_files(runs) == [0, 2]
    assert protocol.agreed_files(runs | {"hapi": {"status": "not run: no java"}}) is None
    assert protocol.agreement([False, False, True, False], [False, True, True, False], [0, 1, 2]) == \
        {"agree": 2, "of": 3}


def test_every_row_carries_its_agreement_and_the_agreed_row_times_only_the_agreed_files(tmp_path: Any) -> None:
    files = [File("MA-valid", "valid", 1, str(tmp_path / "a"), None), File("P-valid", "valid", 1, "b", None),
             File("MA-invalid", "invalid", 1, "c", None), File("bundle-10", "bundle", 10, "d", None)]
    runs = {"hapi": _run([False, False, True, False], [9000.0, 9000.0, 9000.0, 90000.0]),
            "ours": _run([False, True, True, False], [100.0, 300.0, 200.0, 1000.0], "ours"),
            "json.loads": _run([False, False, False, False], [1.0, 1.0, 1.0, 10.0])}
    agreed = figures.summarise(files, runs)
    assert agreed == {"files": ["MA-valid", "MA-invalid"], "of": 3, "judges": ["hapi", "ours"]}
    ours = runs["ours"]["sizes"]
    assert ours["1"]["agree"] == {"agree": 1, "of": 2} and ours["1 (invalid)"]["agree"] == {"agree": 1, "of": 1}
    assert ours["10"]["agree"] == {"agree": 1, "of": 1}
    assert ours["agreed"]["files"] == 2 and ours["agreed"]["median_us"] == pytest.approx(0.15)  # 100 and 200 ns
    assert runs["json.loads"]["sizes"]["agreed"]["agree"] == {"agree": 1, "of": 2}  # timed there, all the same
    table = report.speed_table(runs)
    agreed_rows = [line for line in table if line.startswith("| 1 resource, only files all validators agree on |")]
    assert len(agreed_rows) == 3 and agreed_rows[1].startswith("| 1 resource, only files all validators agree on | "
                                                               "ours | 0.1 |")
    assert agreed_rows[1].endswith("| 2 of 2 |")  # the agreed files: ours has HAPI's verdict on each
    valid_ours = next(line for line in table if line.startswith("| 1 resource (valid examples), one file repeated "
                                                                "| ours |"))
    assert valid_ours.endswith("| 1 of 2 |")


def test_the_rotation_row_is_timed_and_judged_on_the_calls_in_rotation(tmp_path: Any) -> None:
    files = [File("MA-valid", "valid", 1, str(tmp_path / "a"), None), File("P-valid", "valid", 1, "b", None),
             File("MA-invalid", "invalid", 1, "c", None), File("bundle-10", "bundle", 10, "d", None)]

    def rotated(verdicts: list[bool], medians: list[float]) -> dict[str, Any]:
        return {"order": [0, 1], "rounds": 4, "results": [{"errors": v, "median_ns": m, "p95_ns": m, "calls": 4}
                                                          for v, m in zip(verdicts, medians, strict=True)]}

    runs = {"hapi": _run([False, False, True, False], [9000.0, 9000.0, 9000.0, 90000.0], "HAPI")
            | {"rotation": rotated([False, False], [9000.0, 9100.0])},
            "ours": _run([False, False, True, False], [100.0, 300.0, 200.0, 1000.0], "ours")
            | {"rotation": rotated([False, True], [150.0, 450.0])},  # P-valid refused in rotation only
            "json.loads": _run([False, False, False, False], [1.0, 1.0, 1.0, 10.0], "json.loads")}
    figures.summarise(files, runs)
    ours = runs["ours"]
    row = ours["sizes"][figures.ROTATION]
    assert row["median_us"] == pytest.approx(0.3) and row["files"] == 2 and row["rounds"] == row["reps"] == 4
    assert ours["sizes"]["1"]["median_us"] == pytest.approx(0.2)  # the same files repeated: their own row
    assert row["agree"] == {"agree": 1, "of": 2} and ours["sizes"]["1"]["agree"] == {"agree": 2, "of": 2}
    assert ours["rotation_verdict_changed"] == ["P-valid"] and runs["hapi"]["rotation_verdict_changed"] == []
    assert figures.ROTATION not in runs["json.loads"]["sizes"]  # a runner that did not rotate has no such row
    table = report.speed_table(runs)
    labels = [line.split(" | ")[0] for line in table[2:]]
    assert labels.index("| 1 resource (valid examples) in rotation, each call another file") \
        < labels.index("| 1 resource (valid examples), one file repeated") < labels.index("| Bundle of 10")
    rotation_rows = [line for line in table if "in rotation" in line]
    assert len(rotation_rows) == 2 and rotation_rows[1].startswith(
        "| 1 resource (valid examples) in rotation, each call another file | ours | 0.3 |")
    assert rotation_rows[1].endswith("| 1 of 2 |")


def test_without_hapi_the_rows_say_so_instead_of_an_agreement() -> None:
    files = [File("P-valid", "valid", 1, "b", None)]
    runs = {"hapi": {"status": "not run: no java", "contender": "HAPI"}, "ours": _run([False])}
    assert figures.summarise(files, runs) == {"files": [], "of": 1, "judges": ["ours"]}
    assert "agreed" not in runs["ours"]["sizes"]
    assert "— (HAPI not run)" in "\n".join(report.speed_table(runs))


def test_the_readme_figures_are_rewritten_between_the_markers_only() -> None:
    from bench import readme

    text = f"intro\n{readme.BEGIN}\nold figures\n{readme.END}\nafter\n"
    new = readme.rewrite(text, f"{readme.BEGIN}\nnew figures\n{readme.END}")
    assert new == f"intro\n{readme.BEGIN}\nnew figures\n{readme.END}\nafter\n"
    with pytest.raises(ValueError, match="no"):
        readme.rewrite("no markers here", "x")
    committed = (readme.README).read_text(encoding="utf-8")
    assert committed.count(readme.BEGIN) == 1 and committed.count(readme.END) == 1  # the README keeps its section


def test_the_readme_validator_table_carries_agreement_and_warm_up() -> None:
    from bench import readme

    run = {"status": "ran", "contender": "ours", "checks": "everything", "warmup": {
        "steady": True, "steady_after": 12, "passes": 12},
        "sizes": {"1": {"median_us": 480.4, "agree": {"agree": 30, "of": 30}}}}
    lines = readme.validators({"date": "d", "quick": True, "load": "load average 9",
                               "protocol": protocol.QUICK.to_json(), "contenders": {
        "ours": run, "hapi": {"status": "not run: no java", "contender": "HAPI", "checks": "all"}}})
    assert "| ours | 480 (30/30) | steady after 12 passes | everything |" in lines
    assert not any("never became steady" in line for line in lines)
    assert "| HAPI | — | not run: no java | all |" in lines
    assert "load average 9" in lines[0] and "(QUICK)" in lines[0]
    both = run | {"sizes": {"1": {"median_us": 117.0}, figures.ROTATION: {"median_us": 131.0}}}
    lines = readme.validators({"date": "d", "quick": False, "load": "l", "protocol": protocol.FULL.to_json(),
                               "contenders": {"ours": both}})
    assert "| contender | single (valid), in rotation | single (valid), one file repeated | warm-up | checks |" in lines
    assert "| ours | 131 | 117 | steady after 12 passes | everything |" in lines


def _part(per_second: float, p99: float) -> dict[str, Any]:
    return {"per_second": per_second, "p50_ms": p99 / 2, "p99_ms": p99, "errors": 0, "load_cpu_share": 0.1}


def test_the_serving_targets_give_the_factor_each_is_off_by() -> None:
    from bench import targets

    ours = {"name": "ours, SQLite", "creates": _part(60.0, 100.0), "searches": _part(300.0, 25.0),
            "domain_records": _part(50.0, 200.0), "transaction_1000": {"status": 200, "seconds": 3.0}}
    hapi = {"name": "HAPI FHIR 8.8.0 JPA", "creates": _part(40.0, 80.0), "searches": _part(100.0, 30.0)}
    down = {"name": "ours, PostgreSQL", "error": "not run: --no-postgres (QUICK=1)"}
    closed = "(closed loop, 8 clients at saturation)"
    rows = {r["target"]: r for r in targets.serving([ours, down, hapi])}
    assert rows[f"ours, SQLite: creates ≥ 3× HAPI JPA {closed}"]["off_by"] == pytest.approx(2.0)  # 1.5× of 3×
    assert rows[f"ours, SQLite: searches ≥ 3× HAPI JPA {closed}"]["verdict"] == "PASS"  # exactly 3×
    assert rows[f"ours, SQLite: creates p99 ≤ 50 ms {closed}"]["off_by"] == pytest.approx(2.0)
    assert rows[f"ours, SQLite: domain records ≥ 150/s {closed}"]["off_by"] == pytest.approx(3.0)
    assert rows["ours, SQLite: 1,000-entry transaction < 2 s"]["off_by"] == pytest.approx(1.5)
    assert rows["ours, PostgreSQL: every target"]["verdict"] == "NOT RUN"
    # no open loop in these results: its rows are there, each NOT RUN, never dropped
    opened = [r for r in rows.values() if "open loop" in r["target"] and r["target"].startswith("ours, SQLite")]
    assert len(opened) == 3 and all(r["verdict"] == "NOT RUN" for r in opened)
    failed = targets.serving([ours | {"transaction_1000": {"status": 413, "seconds": 0.2}}])
    tx = next(r for r in failed if "transaction" in r["target"])
    assert tx["verdict"] == "NOT RUN" and "HTTP 413" in tx["measured"]  # a refused transaction meets nothing
    assert all(r["verdict"] == "NOT RUN" for r in failed if "HAPI" in r["target"])  # no HAPI, no ratio
    table = targets.markdown(targets.serving([ours, hapi], clients=4))
    assert ("| ours, SQLite: creates ≥ 3× HAPI JPA (closed loop, 4 clients at saturation) | 1.50× (60 vs 40/s) | "
            "MISS | 2.00× |") in table


def test_a_parts_cpu_time_counts_the_children_it_waited_for() -> None:
    """bench/machine.cpu_seconds, printed beside each part's wall time: a child's CPU counts once it is reaped."""
    import subprocess
    import sys

    from bench import machine

    before = machine.cpu_seconds()
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\n"
                    "while time.process_time() < end: pass"], check=True)
    assert machine.cpu_seconds() - before >= 0.3
