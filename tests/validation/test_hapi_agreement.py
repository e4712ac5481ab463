"""Our validator and the HAPI FHIR 8.8.0 reference validator give the same verdict (errors or none)
on our examples, on hundreds of mutations of them, and on a sample of the official R4 examples."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from peers.hapi_validator import validate as hapi_validate
from validation.corpus import mutated, official_sample

from service.conformance.definitions import load
from service.resources import profiles_dir
from service.validation import ours as our_validator
from service.validation.engine import Validator

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = profiles_dir() / "examples"
OFFICIAL = ROOT / ".cache" / "hl7.fhir.r4.examples-4.0.1.tgz"


def _examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.json") if p.name != "manifest.json")


def _corpus(name: str) -> list[tuple[str, dict[str, Any]]]:
    if name == "examples":
        return [(p.stem, json.loads(p.read_text())) for p in _examples() + sorted((EXAMPLES / "invalid").glob("*.json"))]
    if name == "mutations":
        return list(mutated(_examples()))
    if not OFFICIAL.exists():
        pytest.fail(f"{OFFICIAL} is missing: `make test` downloads it (scripts/fetch_r4_examples.sh)")
    return list(official_sample(OFFICIAL))


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[str, Any, Any]]]:
    """For each corpus: (name, our findings, HAPI's issues) per resource, one HAPI run for all."""
    folder = tmp_path_factory.mktemp("agreement")
    corpora = {name: _corpus(name) for name in ("examples", "mutations", "official")}
    files = []
    for corpus, items in corpora.items():
        for i, (name, doc) in enumerate(items):
            path = folder / f"{corpus}-{i:04d}-{name}.json"
            path.write_text(json.dumps(doc))
            files.append(path)
    hapi = {Path(r["file"]).name: r["issues"] for r in hapi_validate(files, profiles_dir())["results"]}
    by_ours = our_validator()
    base_only = Validator(load())  # R4's examples predate our profiles
    out: dict[str, list[tuple[str, Any, Any]]] = {}
    for corpus, items in corpora.items():
        judge = base_only if corpus == "official" else by_ours
        out[corpus] = [(name, judge.validate(doc), hapi[f"{corpus}-{i:04d}-{name}.json"])
                       for i, (name, doc) in enumerate(items)]
    return out


#: Disagreements where HAPI applies a rule that is not FHIR's: each stays listed only while it disagrees.
KNOWN = {
    # HAPI checks that an HL7 work group extension matches the publisher: HL7's publication policy for its
    # own artefacts, not a rule of the R4 specification (ValueSet has no such invariant).
    "ValueSet-dicm-405-mediatype": "HL7 work-group/publisher consistency",
}


def _disagreements(rows: list[tuple[str, Any, Any]]) -> list[str]:
    lines = []
    for name, ours, theirs in rows:
        if name in KNOWN:
            continue
        our_errors = [f"{f.expression}: {f.message}" for f in ours if f.severity in ("error", "fatal")]
        their_errors = [f"{i.get('location')}: {i['message']}" for i in theirs if i["severity"] in ("error", "fatal")]
        if bool(our_errors) != bool(their_errors):
            lines.append(f"{name}\n  ours: {our_errors or 'no errors'}\n  HAPI: {their_errors or 'no errors'}")
    return lines


def test_known_disagreements_still_disagree(verdicts: dict[str, list[tuple[str, Any, Any]]]) -> None:
    rows = {name: (ours, theirs) for name, ours, theirs in verdicts["official"]}
    for name in KNOWN:
        ours, theirs = rows[name]
        assert any(f.severity == "error" for f in ours) != any(i["severity"] == "error" for i in theirs), name


@pytest.mark.parametrize("corpus, minimum", [("examples", 40), ("mutations", 300), ("official", 250)])
def test_same_verdict_as_hapi(verdicts: dict[str, list[tuple[str, Any, Any]]], corpus: str, minimum: int) -> None:
    rows = verdicts[corpus]
    assert len(rows) >= minimum
    disagreements = _disagreements(rows)
    assert not disagreements, f"{len(disagreements)} of {len(rows)} disagree:\n" + "\n".join(disagreements)
