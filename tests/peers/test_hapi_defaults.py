"""The reference harness runs at the HL7 validator CLI's defaults (ValidateMain.configureAsHl7Defaults): an
extension it holds no definition of is an error (a hint with --allow-any-extensions, nothing for an allowed
domain), and a meta.profile it does not hold is a warning."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from peers.hapi_validator import validate

NARRATIVE = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}
UNHELD = "http://example.org/fhir/StructureDefinition/unheld"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hl7-defaults")
    docs = {
        "extension": {"resourceType": "Patient", "id": "p1", "text": NARRATIVE,
                      "extension": [{"url": UNHELD, "valueString": "x"}]},
        "profile": {"resourceType": "Patient", "id": "p2", "text": NARRATIVE,
                    "meta": {"profile": ["http://example.org/fhir/StructureDefinition/unheld-profile"]}},
    }
    for name, doc in docs.items():
        (folder / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")
    return {name: folder / f"{name}.json" for name in docs}


def severities(result: dict[str, Any], fragment: str) -> set[str]:
    return {i["severity"] for i in result["issues"] if fragment in i["message"]}


def test_defaults(files: dict[str, Path]) -> None:
    extension, profile = validate([files["extension"], files["profile"]], None)["results"]
    assert severities(extension, UNHELD) == {"error"}
    assert severities(profile, "unheld-profile") == {"warning"}, profile["issues"]
    assert not [i for i in profile["issues"] if i["severity"] == "error"]


def test_allowed_extensions(files: dict[str, Path]) -> None:
    (any_allowed,) = validate([files["extension"]], None, extra_args=["--allow-any-extensions"])["results"]
    assert severities(any_allowed, UNHELD) == {"information"}
    (domain,) = validate([files["extension"]], None, extra_args=["--extension-domain", "http://example.org/fhir/"])[
        "results"]
    assert not [i for i in domain["issues"] if i["severity"] == "error"]
