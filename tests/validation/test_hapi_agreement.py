"""Our validator and the HL7 reference validator agree (errors or none) on a corpus that is not ours.

The reference is HAPI FHIR 8.8.0's validator (org.hl7.fhir.validation 6.7.9) configured as the HL7 validator CLI's
defaults (tests/peers/hapi/validator, ValidateMain.configureAsHl7Defaults names and justifies every option); ours
runs at its defaults, which are the same (service/validation/policy.py). The corpus:

* official: every official R4 example (hl7.fhir.r4.examples 4.0.1) but the StructureDefinitions and the files over
  1 MB (tests/validation/corpus.py says why);
* ips: the examples of the International Patient Summary IG (hl7.fhir.uv.ips 2.0.0, R4), its package loaded by both;
* mutations: every mutation (corpus.MUTATIONS) of every 15th official example that is not a conformance resource,
  and of each of our valid examples;
* ours: our IG's examples, valid and invalid.

Every disagreement is fixed or listed in disagreements.yaml with the specification text that decides which side is
right; the test fails on an unlisted disagreement and on a listed one that no longer disagrees. HAPI's verdicts are
cached per machine (tests/validation/verdicts.py): the first run takes many minutes, later ones seconds.

`make test` (and so CI) runs the whole corpus, about 6,500 resources: about 100 ms of HAPI's CPU each (one core,
warm-up included: 41 CPU-seconds per JVM of 400 official examples), so about 11 minutes on a cold cache and
seconds on a warm one. KFHIR_AGREEMENT_SAMPLE=n takes every n-th official example and mutation base instead (an
inner loop's sample; listed entries outside the sample are then not checked).
"""
from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from validation.corpus import mutated_docs, official_all, package_examples
from validation.verdicts import hapi_issues

from service.conformance.definitions import Definitions, load
from service.conformance.package import CONFORMANCE_TYPES, Package
from service.resources import profiles_dir
from service.validation.engine import Validator

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
OFFICIAL = CACHE / "hl7.fhir.r4.examples-4.0.1.tgz"
IPS = CACHE / "hl7.fhir.uv.ips-2.0.0.tgz"
EXAMPLES = profiles_dir() / "examples"
LISTED = Path(__file__).with_name("disagreements.yaml")
REPORT = ROOT / "tests" / "artifacts" / "agreement.txt"
#: conformance resources: definitions, not instances to mutate
DEFINITIONS = {*CONFORMANCE_TYPES, "SearchParameter", "OperationDefinition", "CapabilityStatement",
               "ImplementationGuide", "NamingSystem", "CompartmentDefinition", "GraphDefinition", "MessageDefinition"}
Row = tuple[str, list[str], list[str]]  # name, our errors, HAPI's errors
SAMPLE = max(1, int(os.environ.get("KFHIR_AGREEMENT_SAMPLE") or 1))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: `make test` downloads it (scripts/fetch_packages.sh)")
    return path


def _ours() -> list[tuple[str, dict[str, Any]]]:
    paths = sorted(EXAMPLES.glob("*-*.json")) + sorted((EXAMPLES / "invalid").glob("*.json"))
    return [(p.stem, json.loads(p.read_text(encoding="utf-8"))) for p in paths]


def corpora() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]], list[Path], Path | None]]:
    """(corpus, documents, packages loaded, IG folder loaded) for each corpus."""
    official = list(official_all(_need(OFFICIAL)))
    instances = [(n, d) for n, d in official if d.get("resourceType") not in DEFINITIONS]
    yield "official", official[::SAMPLE], [], None
    yield "ips", list(package_examples(_need(IPS))), [IPS], None
    valid_ours = [(n, d) for n, d in _ours() if (EXAMPLES / f"{n}.json").exists()]
    yield "mutations", [*mutated_docs(instances, every=15 * SAMPLE), *mutated_docs(valid_ours)], [], profiles_dir()
    yield "ours", _ours(), [], profiles_dir()


def _with_packages(defs: Definitions, packages: list[Path]) -> Definitions:
    extra = [r for p in packages for r in Package.from_tgz(p).resources()
             if r.get("resourceType") in {*CONFORMANCE_TYPES, "ImplementationGuide"}]
    return defs.with_own([*defs.own.values(), *extra]) if extra else defs


def _errors(findings: list[Any]) -> list[str]:
    return [f"{f.expression}: {f.message}" for f in findings if f.severity in ("error", "fatal")]


@cache
def verdicts() -> dict[str, list[Row]]:
    defs = load()
    out: dict[str, list[Row]] = {}
    for corpus, docs, packages, ig in corpora():
        theirs = hapi_issues(dict(docs), packages=packages, ig_dir=ig)
        ours = Validator(_with_packages(defs, packages))
        out[corpus] = [(name, _errors(ours.validate(doc)),
                        [f"{i.get('location')}: {i['message']}" for i in theirs[name]
                         if i["severity"] in ("error", "fatal")]) for name, doc in docs]
    return out


@cache
def listed() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = yaml.safe_load(LISTED.read_text(encoding="utf-8")) or {}
    return found


def disagreements(rows: list[Row]) -> list[Row]:
    return [row for row in rows if bool(row[1]) != bool(row[2])]


def explained(name: str) -> str | None:
    """The entry of disagreements.yaml that explains `name`: by name, or by a pattern (`*--reference-wrong-type`:
    every mutation of that kind)."""
    return next((key for key in listed() if fnmatch.fnmatchcase(name, key)), None)


def _report() -> str:
    rows = [r for corpus in verdicts().values() for r in corpus]
    differ = [r for corpus in verdicts().values() for r in disagreements(corpus)]
    lines = [f"corpus: {len(rows)} resources ({', '.join(f'{c} {len(r)}' for c, r in verdicts().items())})",
             f"agreement: {100 * (len(rows) - len(differ)) / len(rows):.2f} % ({len(differ)} disagree, "
             f"{sum(1 for r in differ if explained(r[0]))} of them listed with the text that decides)"]
    lines += [f"{name}\n  ours: {ours or 'no errors'}\n  HAPI: {theirs or 'no errors'}" for name, ours, theirs in differ]
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "\n".join(lines)


@pytest.mark.parametrize("corpus, minimum", [("official", 4500), ("ips", 40), ("mutations", 800), ("ours", 60)])
def test_every_disagreement_is_listed_with_the_text_that_decides(corpus: str, minimum: int) -> None:
    rows = verdicts()[corpus]
    assert len(rows) >= minimum // (SAMPLE if corpus in ("official", "mutations") else 1)
    unlisted = [r for r in disagreements(rows) if explained(r[0]) is None]
    assert not unlisted, f"{len(unlisted)} of {len(rows)} disagree and are not listed in {LISTED.name}:\n" + \
        "\n".join(f"{n}\n  ours: {o or 'no errors'}\n  HAPI: {t or 'no errors'}" for n, o, t in unlisted[:60])


def test_validate_says_valid_for_every_example_the_hl7_validator_calls_valid() -> None:
    """The examples (not the mutations) the reference calls valid, ours calls valid too; the only exceptions are
    listed with `hl7_cli: invalid`: the HL7 CLI itself refuses them, by a check the harness cannot make (it has no
    resource fetcher, so it checks no URL)."""
    wrong = [name for corpus in ("official", "ips", "ours") for name, ours, theirs in verdicts()[corpus]
             if ours and not theirs and listed().get(explained(name) or "", {}).get("hl7_cli") != "invalid"]
    assert not wrong, f"{len(wrong)} examples HAPI calls valid fail here: {wrong[:20]}"


def test_every_listed_disagreement_still_disagrees_and_says_why() -> None:
    current = {r[0] for corpus in verdicts().values() for r in disagreements(corpus)}
    validated = [r[0] for corpus in verdicts().values() for r in corpus]
    for name, entry in listed().items():
        if SAMPLE > 1 and not fnmatch.filter(validated, name):
            continue  # outside this sample: `make agreement` checks it
        assert fnmatch.filter(current, name), f"{name} no longer disagrees: take it off {LISTED.name}"
        assert entry.get("right") in ("ours", "hapi"), name
        assert entry.get("spec", "").strip() and entry.get("why", "").strip(), name
    print(_report())  # noqa: T201 - the corpus size and agreement, also in tests/artifacts/agreement.txt
