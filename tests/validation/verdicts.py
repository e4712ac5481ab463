"""The HAPI reference validator's verdicts on a corpus, cached on this machine so `make test` stays bounded.

A verdict depends only on the file's bytes, the conformance packages loaded beside R4, and the harness (its
pom.xml and sources, which hold its options: ValidateMain.configureAsHl7Defaults). Each is kept under
~/.cache/ketamine-fhir/hapi-verdicts (KFHIR_VERDICT_CACHE) named by the hash of all three, so the first run
on a machine validates the whole corpus (many minutes on a busy 2-core machine) and later runs only what changed.

    issues = hapi_issues({"official/Patient-example": doc, ...}, packages=[...])   # name → HAPI's issues
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from peers.hapi_validator import HARNESS_DIR, validate

#: files per JVM: each run pays a warm-up of several seconds, and one too long would hit the harness timeout
CHUNK = 400
CHUNK_TIMEOUT_S = 3600


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ketamine-fhir" / "hapi-verdicts"
    folder = Path(os.environ.get("KFHIR_VERDICT_CACHE") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@cache
def harness_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted([HARNESS_DIR / "pom.xml", *(HARNESS_DIR / "src").rglob("*")]):
        if path.is_file():
            digest.update(path.relative_to(HARNESS_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _packages_fingerprint(packages: Sequence[Path], ig_dir: Path | None) -> str:
    digest = hashlib.sha256()
    for path in packages:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    if ig_dir is not None:
        for path in sorted(ig_dir.glob("*.json")):
            digest.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def hapi_issues(docs: Mapping[str, Any], packages: Sequence[Path] = (), ig_dir: Path | None = None) \
        -> dict[str, list[dict[str, Any]]]:
    """HAPI's issues for each document (name → issues), from the cache or from the harness in chunks."""
    folder = cache_dir()
    context = harness_fingerprint() + _packages_fingerprint(packages, ig_dir)
    texts = {name: json.dumps(doc, ensure_ascii=False) for name, doc in docs.items()}
    keys = {name: hashlib.sha256((context + text).encode()).hexdigest() for name, text in texts.items()}
    missing = [name for name, key in keys.items() if not (folder / f"{key}.json").is_file()]
    for start in range(0, len(missing), CHUNK):
        _run([(name, texts[name], keys[name]) for name in missing[start:start + CHUNK]], packages, ig_dir, folder)
    return {name: json.loads((folder / f"{key}.json").read_text(encoding="utf-8")) for name, key in keys.items()}


def _run(batch: list[tuple[str, str, str]], packages: Sequence[Path], ig_dir: Path | None, folder: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for _, text, key in batch:
            path = Path(tmp) / f"{key}.json"
            path.write_text(text, encoding="utf-8")
            files.append(path)
        report = validate(files, ig_dir, packages=packages, allow_snapshot_problems=True, timeout=CHUNK_TIMEOUT_S)
        for (_, _, key), result in zip(batch, report["results"], strict=True):
            target = folder / f"{key}.json"
            partial = target.with_suffix(".tmp")
            partial.write_text(json.dumps(result["issues"]), encoding="utf-8")
            partial.replace(target)  # whole or absent: a run stopped halfway leaves no half verdict
