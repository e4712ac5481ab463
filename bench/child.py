"""One Python contender in a fresh process: `python bench/child.py NAME MANIFEST.json` (pinned by the parent).

Run by path (fhircraft runs in its own virtual environment, where this project is not installed), so only the
standard library and bench/protocol.py (standard library only, on PYTHONPATH) are imported here; each
contender's library is imported inside its loader. The protocol (bench/protocol.py), shared with
bench/medplum/validate.mjs and bench/hapi/BenchMain.java: the manifest holds spawn_ns, our StructureDefinitions
(profiles), the files, the warm-up files, the rotation (the valid singles, in the order the Bundles cycle through
them) and the protocol settings; stdout gets one JSON document with loaded_ns and first_result_ns
(time.monotonic_ns, CLOCK_MONOTONIC like the parent's spawn_ns), the warm-up pass values (ms per round), per file
the call times of parse + validate from the file's text in memory, whether errors were reported, and the first
messages, and the same per file of the rotation's calls."""
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


def summary(times: Sequence[int]) -> dict[str, Any]:
    """What the parent needs of one file's call times: kept per file, not every sample, so that the samples
    of a fast contender (tens of thousands of calls) do not swell the peak RSS being measured."""
    ordered = sorted(times)
    return {"calls": len(ordered), "median_ns": _quantile(ordered, 0.5), "p95_ns": _quantile(ordered, 0.95)}


def _call(check: Check, text: str) -> list[str]:
    try:
        return check(text)
    except ValueError as exc:  # not JSON
        return [f"not parsed: {exc}"]


def _timed(check: Check, text: str, min_calls: int, min_ns: int, max_ns: int | None = None) -> dict[str, Any]:
    """Calls until min_calls and min_ns are reached, but none once the calls have taken max_ns (fhircraft spends
    about 40 s on each call of the 1,000-entry Bundle, which made make bench overrun its 15 minutes)."""
    times: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    errors: list[str] = []
    while len(times) < min_calls or clock() - start < min_ns:
        if max_ns is not None and times and clock() - start > max_ns:
            break
        t0 = clock()
        errors = _call(check, text)
        times.append(clock() - t0)
    return {**summary(times), "errors": bool(errors), "messages": errors[:5]}


def rotate(check: Check, texts: list[str], order: list[int], settings: dict[str, Any]) -> dict[str, Any]:
    """The valid singles in rotation (bench/protocol.py): rounds of one call of each file of `order`, in that
    order, so that consecutive calls never see the same document, until every file has had min_calls calls and
    the rounds have taken per_file_s per file (the time each file gets alone); a file's median from its calls."""
    clock = time.perf_counter_ns
    budget = int(settings["per_file_s"] * 1e9) * len(order)
    cap = int(settings["slow_file_s"] * 1e9) * len(order)
    times = [array("q") for _ in order]  # 8 bytes a call: json.loads makes some 500,000 calls in 3.7 s
    errors: list[list[str]] = [[] for _ in order]
    start, rounds = clock(), 0
    while order and (rounds < settings["min_calls"] or clock() - start < budget):
        if rounds and clock() - start > cap:
            break
        for k, i in enumerate(order):
            t0 = clock()
            errors[k] = _call(check, texts[i])
            times[k].append(clock() - t0)
        rounds += 1
    results = [{**summary(t), "errors": bool(e), "messages": e[:5]} for t, e in zip(times, errors, strict=True)]
    return {"order": order, "rounds": rounds, "seconds": (clock() - start) / 1e9, "results": results}


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
    min_ns, max_ns = int(settings["per_file_s"] * 1e9), int(settings["slow_file_s"] * 1e9)
    results = [_timed(check, text, settings["min_calls"], min_ns, max_ns) for text in texts]
    rotation = rotate(check, texts, manifest["rotation"], settings)
    return {"contender": label, "loaded_ns": loaded_ns, "first_result_ns": first_ns, **info,
            "warmup_pass_ms": passes, "peak_rss_kib": vmhwm_kib(), "results": results, "rotation": rotation}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
