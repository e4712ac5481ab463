"""Our validator in-process, on one core, after warm-up.

For every file: `validate(doc)` repeated until at least `min_time` seconds and `min_reps` calls have passed,
each call timed with time.perf_counter_ns; the file's figure is the median call. `json.loads(text)` is timed
the same way with a tenth of the budget, so that parse+validate (HAPI's per-file time includes reading and
parsing the file) can be compared too. Throughput comes from whole passes over the corpus."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bench import stats
from bench.corpus import Item


def _has_errors(findings: list[Any]) -> bool:
    return any(f.severity in ("error", "fatal") for f in findings)


def _median_ns(call: Callable[[], object], min_ns: int, min_reps: int) -> tuple[float, int]:
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    while True:
        t0 = clock()
        call()
        t1 = clock()
        samples.append(t1 - t0)
        if len(samples) >= min_reps and t1 - start >= min_ns:
            break
    return stats.median(samples) or 0.0, len(samples)


def _pin_one_core() -> tuple[set[int] | None, int | None]:
    if not hasattr(os, "sched_setaffinity"):
        return None, None
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})
    return allowed, cpu


def measure(items: list[Item], min_time: float, min_reps: int, passes: int = 3) -> dict[str, Any]:
    from service.validation import default_validator

    allowed, cpu = _pin_one_core()
    try:
        validator = default_validator()
        validate = validator.validate
        # Warm-up: every plan compiled, every code path taken once.
        t0 = time.perf_counter()
        for item in items:
            if item.doc is not None:
                validate(item.doc)
        warmup_s = time.perf_counter() - t0

        per_file: list[dict[str, Any]] = []
        min_ns = int(min_time * 1e9)
        for item in items:
            parse_ns, parse_reps = _median_ns(partial(json.loads, item.text), min_ns // 10, min_reps)
            if item.doc is None:
                per_file.append({"validate_us": None, "parse_us": parse_ns / 1e3, "reps": 0, "errors": True,
                                 "note": "not JSON: rejected when parsing"})
                continue
            findings = validate(item.doc)
            validate_ns, reps = _median_ns(partial(validate, item.doc), min_ns, min_reps)
            per_file.append({"validate_us": validate_ns / 1e3, "parse_us": parse_ns / 1e3, "reps": reps,
                             "parse_reps": parse_reps, "errors": _has_errors(findings),
                             "error_messages": [f"{f.expression}: {f.message}" for f in findings
                                                if f.severity in ("error", "fatal")][:5]})

        docs = [item.doc for item in items if item.doc is not None]
        pass_s = []
        for _ in range(passes):
            t0 = time.perf_counter()
            for doc in docs:
                validate(doc)
            pass_s.append(time.perf_counter() - t0)
    finally:
        if allowed is not None:
            os.sched_setaffinity(0, allowed)
    best = stats.median(pass_s) or float("nan")
    return {"per_file": per_file, "warmup_s": warmup_s, "pinned_cpu": cpu,
            "pass_s": pass_s, "resources_per_s": len(docs) / best,
            "settings": {"min_time_s": min_time, "min_reps": min_reps, "parse_min_time_s": min_time / 10,
                         "throughput_passes": passes}}
