"""One Python contender in a fresh process: `python bench/child.py NAME MANIFEST.json` (pinned by the parent).

Run by path (fhircraft runs in its own virtual environment, where this project is not installed), so only the
standard library and bench/protocol.py (standard library only, on PYTHONPATH) are imported here; each
contender's library is imported inside its loader. The protocol (bench/protocol.py), shared with
bench/medplum/validate.mjs and bench/hapi/BenchMain.java: the manifest holds spawn_ns, our StructureDefinitions
(profiles), the files, the warm-up files, the rotation (the valid singles, in the order the Bundles cycle through
them), the pairs (each Bundle with the singles of its entries, in its order) and the protocol settings; stdout
gets one JSON document with loaded_ns and first_result_ns (time.monotonic_ns, CLOCK_MONOTONIC like the parent's
spawn_ns), the warm-up pass values (ms per round), per file its calls of parse + validate from the file's text in
memory (their count, the median and p95 over rounds, each round's median), whether errors were reported, and the
first messages, the same per file of the rotation, and per Bundle the times of its pairs with the same resources as
singles (rule 4)."""
from __future__ import annotations

import json
import sys
import time
import warnings
from array import array
from collections.abc import Callable, Sequence
from typing import Any

Check = Callable[[str], list[str]]  # text -> error messages (empty: no error)
R4 = "http://hl7.org/fhir/StructureDefinition/"


def _ours(profiles: list[str]) -> tuple[str, Check, dict[str, Any]]:
    from service.validation import settle
    validate = settle().validate  # as `ketamine-fhir serve --production` starts it (service/web/serving.py)

    def check(text: str) -> list[str]:
        return [f"{f.expression}: {f.message}" for f in validate(json.loads(text)) if f.severity in ("error", "fatal")]
    return "ours (ketamine-fhir)", check, {}


def _fhir_resources(profiles: list[str]) -> tuple[str, Check, dict[str, Any]]:
    from importlib.metadata import version

    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    def check(text: str) -> list[str]:
        doc = json.loads(text)
        try:
            get_fhir_model_class(doc["resourceType"]).model_validate(doc)
        except (ValidationError, KeyError, ValueError) as exc:
            return [str(exc).splitlines()[0][:300]]
        return []
    return f"fhir.resources {version('fhir.resources')} model_validate", check, {"profiles": "none (structure only)"}


def _json_loads(profiles: list[str]) -> tuple[str, Check, dict[str, Any]]:
    def check(text: str) -> list[str]:
        json.loads(text)
        return []
    return "json.loads (parse floor)", check, {"profiles": "none (parse only)"}


def _fhircraft(profiles: list[str]) -> tuple[str, Check, dict[str, Any]]:
    from importlib.metadata import version

    from fhircraft.fhir.resources.factory import FHIRModelFactory  # type: ignore[import-not-found]  # its own venv
    from pydantic import ValidationError

    warnings.simplefilter("ignore")  # fhircraft warns on every warning-level constraint (dom-6 …)
    factory = FHIRModelFactory("R4")
    loaded: dict[str, Any] = {}
    failed: dict[str, str] = {}
    urls = []
    for path in profiles:  # all registered first: a profile's model needs the extensions it uses
        with open(path, encoding="utf-8") as f:
            sd = json.load(f)
        try:
            factory.register(sd)
            urls.append(sd["url"])
        except Exception as exc:  # noqa: BLE001 - a profile fhircraft cannot load is reported, with why
            failed[sd["url"]] = " ".join(str(exc).split())[:300]
    for url in urls:
        try:
            loaded[url] = factory.build(canonical_url=url)
        except Exception as exc:  # noqa: BLE001 - as above
            failed[url] = " ".join(str(exc).split())[:300]

    def model(resource: Any) -> Any:
        meta = resource.get("meta") or {}
        url = (meta.get("profile") or [None])[0]
        return loaded.get(url) or factory.build(canonical_url=R4 + resource["resourceType"])

    def check(text: str) -> list[str]:
        doc = json.loads(text)
        resources = [doc] + ([e.get("resource") for e in doc.get("entry", [])] if doc.get("resourceType") == "Bundle"
                             else [])
        errors = []
        for resource in resources:
            try:
                model(resource).model_validate(resource)
            except (ValidationError, KeyError, ValueError, TypeError, AttributeError) as exc:
                errors.append(" ".join(str(exc).split())[:300])
        return errors
    return f"fhircraft {version('fhircraft')}", check, {"profiles_loaded": sorted(loaded), "profiles_failed": failed}


CONTENDERS: dict[str, Callable[[list[str]], tuple[str, Check, dict[str, Any]]]] = {
    "ours": _ours, "fhir.resources": _fhir_resources, "json.loads": _json_loads, "fhircraft": _fhircraft}


def _quantile(ordered: list[int], q: float) -> float:
    """As bench/stats.quantile (not importable here: fhircraft's venv does not have this project)."""
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _call(check: Check, text: str) -> list[str]:
    try:
        return check(text)
    except ValueError as exc:  # not JSON
        return [f"not parsed: {exc}"]


class _Series:
    """One file's calls in one row over the rounds: per round its median and p95, kept as numbers (not every
    sample, which would swell the peak RSS being measured), the time its calls took, its last verdict."""

    def __init__(self) -> None:
        self.calls, self.spent_ns = 0, 0
        self.medians: list[float] = []
        self.p95s: list[float] = []
        self.errors: list[str] = []

    def close(self, times: Sequence[int]) -> None:
        if times:
            ordered = sorted(times)
            self.medians.append(_quantile(ordered, 0.5))
            self.p95s.append(_quantile(ordered, 0.95))

    def to_json(self) -> dict[str, Any]:
        """The file's median: the median of its rounds' medians (p95 likewise), so that a round slowed by other
        work on the machine moves neither."""
        return {"calls": self.calls, "median_ns": _quantile(sorted(self.medians), 0.5),
                "p95_ns": _quantile(sorted(self.p95s), 0.5), "round_medians_ns": self.medians,
                "errors": bool(self.errors), "messages": self.errors[:5]}


def _repeat(check: Check, text: str, series: _Series, min_calls: int, share_ns: int, cap_ns: int) -> None:
    """One round of one file repeated: calls until min_calls and share_ns are reached, but none once the file's
    calls have taken cap_ns in all (fhircraft spends about 40 s on each call of the 1,000-entry Bundle, which made
    make bench overrun its 15 minutes): such a file keeps its one call."""
    if series.calls and series.spent_ns > cap_ns:
        return
    clock = time.perf_counter_ns
    times = array("q")
    start = clock()
    while len(times) < min_calls or clock() - start < share_ns:
        if series.calls and series.spent_ns > cap_ns:
            break
        t0 = clock()
        series.errors = _call(check, text)
        spent = clock() - t0
        times.append(spent)
        series.calls += 1
        series.spent_ns += spent
    series.close(times)


def _rotate(check: Check, texts: list[str], order: list[int], turns: list[_Series], min_rounds: int,
            share_ns: int, cap_ns: int) -> int:
    """One round of the rotation: passes of one call of each file of `order`, in that order, so that consecutive
    calls never see the same document, until min_rounds passes and share_ns; none once the passes have taken
    cap_ns in all. Returns the passes made."""
    if not order or (turns[0].calls and sum(t.spent_ns for t in turns) > cap_ns):
        return 0
    clock = time.perf_counter_ns
    times = [array("q") for _ in order]  # 8 bytes a call: json.loads makes some 500,000 calls in 3.7 s
    start, passes = clock(), 0
    while passes < min_rounds or clock() - start < share_ns:
        if passes and sum(t.spent_ns for t in turns) > cap_ns:
            break
        for k, i in enumerate(order):
            t0 = clock()
            turns[k].errors = _call(check, texts[i])
            spent = clock() - t0
            times[k].append(spent)
            turns[k].calls += 1
            turns[k].spent_ns += spent
        passes += 1
    for series, kept in zip(turns, times, strict=True):
        series.close(kept)
    return passes


def measure(check: Check, texts: list[str], order: list[int], settings: dict[str, Any]) \
        -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rules 2 and 3 of bench/protocol.py in `rounds` rounds: in each, every file repeated for its share of
    per_file_s, and the rotation of `order` for the same share per file; even rounds take the files in order and
    then the rotation, odd rounds the rotation first and then the files in reverse order, so that neither row,
    nor any file, always runs after the same work. Returns each file's result and the rotation's."""
    clock = time.perf_counter_ns
    rounds = max(1, int(settings.get("rounds", 1)))
    min_calls = -(-int(settings["min_calls"]) // rounds)  # per round, so min_calls in all
    share_ns = int(settings["per_file_s"] * 1e9 / rounds)
    cap_ns = int(settings["slow_file_s"] * 1e9)
    files = [_Series() for _ in texts]
    turns = [_Series() for _ in order]
    passes, rotation_ns = 0, 0

    def rotation() -> None:
        nonlocal passes, rotation_ns
        t0 = clock()
        passes += _rotate(check, texts, order, turns, min_calls, share_ns * len(order), cap_ns * len(order))
        rotation_ns += clock() - t0

    for r in range(rounds):
        forward = r % 2 == 0
        if not forward:
            rotation()
        for i in (range(len(texts)) if forward else reversed(range(len(texts)))):
            _repeat(check, texts[i], files[i], min_calls, share_ns, cap_ns)
        if forward:
            rotation()
    return [f.to_json() for f in files], {"order": order, "rounds": passes, "timed_rounds": rounds,
                                          "seconds": rotation_ns / 1e9, "results": [t.to_json() for t in turns]}


def pair(check: Check, texts: list[str], pairs: list[dict[str, Any]], results: list[dict[str, Any]],
         settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Rule 4 of bench/protocol.py: per Bundle, pairs of one call of the Bundle and one pass over the same resources
    as singles (`singles`, the rotation in the Bundle's order), taking turns at going first, each side timed as a
    whole, until `min_pairs` pairs and `pair_s`, at most `max_pairs`, none more once they have taken
    `pairs_cap_s`; none for a Bundle whose `min_pairs` pairs would take longer than that by its files' medians
    (`results`, rule 2). Returns each Bundle's pair times; the parent makes the ratios."""
    clock = time.perf_counter_ns
    share_ns, cap_ns = int(settings.get("pair_s", 0) * 1e9), int(settings.get("pairs_cap_s", 10) * 1e9)
    least, most = int(settings.get("min_pairs", 1)), int(settings.get("max_pairs", 1000))
    out = []
    for spec in pairs:
        b, singles = spec["bundle"], spec["singles"]
        guess = results[b]["median_ns"] + sum(results[i]["median_ns"] for i in singles)
        bundle_ns, singles_ns = array("q"), array("q")
        start, spent = clock(), 0
        while guess * least <= cap_ns and len(bundle_ns) < most and spent <= cap_ns \
                and (len(bundle_ns) < least or clock() - start < share_ns):
            for is_bundle in ((True, False) if len(bundle_ns) % 2 == 0 else (False, True)):
                t0 = clock()
                if is_bundle:
                    _call(check, texts[b])
                else:
                    for i in singles:
                        _call(check, texts[i])
                spent_ns = clock() - t0
                (bundle_ns if is_bundle else singles_ns).append(spent_ns)
                spent += spent_ns
        out.append({"bundle": b, "bundle_ns": list(bundle_ns), "singles_ns": list(singles_ns)})
    return out


def warm_up(check: Check, texts: list[str], settings: dict[str, Any]) -> list[float]:
    """Rule 1 of bench/protocol.py: passes over the warm-up files until the last `window` pass values (ms per
    round) are steady, or `max_s` has passed. Returns the pass values."""
    from bench.protocol import is_steady  # on PYTHONPATH (bench/contenders.py); standard library only

    clock = time.perf_counter_ns
    began = clock()
    min_pass_ns, max_ns = int(settings["min_pass_s"] * 1e9), int(settings["max_s"] * 1e9)
    passes: list[float] = []
    while not is_steady(passes, settings["window"], settings["tolerance"]) and clock() - began < max_ns:
        t0, rounds = clock(), 0
        while rounds == 0 or clock() - t0 < min_pass_ns:
            for text in texts:
                _call(check, text)
            rounds += 1
        passes.append((clock() - t0) / rounds / 1e6)
    return passes


def vmhwm_kib() -> int | None:
    """Peak resident set of this process image (VmHWM). Not ru_maxrss: at exec Linux carries the parent's
    high-water mark over (subprocess starts children with vfork), so ru_maxrss reports the parent's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), None)
    except OSError:
        return None


def main(name: str, manifest_path: str) -> dict[str, Any]:
    """The protocol of bench/protocol.py; the parent pins this process to its core before exec."""
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    settings = manifest["protocol"]
    label, check, info = CONTENDERS[name](manifest["profiles"])
    texts = []
    for entry in manifest["files"]:
        with open(entry["path"], encoding="utf-8") as f:
            texts.append(f.read())
    loaded_ns = time.monotonic_ns()
    _call(check, texts[manifest["warmup"][0]])
    first_ns = time.monotonic_ns()
    passes = warm_up(check, [texts[i] for i in manifest["warmup"]], settings)
    results, rotation = measure(check, texts, manifest["rotation"], settings)
    pairs = pair(check, texts, manifest.get("pairs", []), results, settings)
    return {"contender": label, "loaded_ns": loaded_ns, "first_result_ns": first_ns, **info,
            "warmup_pass_ms": passes, "peak_rss_kib": vmhwm_kib(), "results": results, "rotation": rotation,
            "pairs": pairs}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
