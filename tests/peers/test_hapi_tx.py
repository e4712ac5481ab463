"""The validator with a real terminology server: HAPI FHIR's JPA peer on loopback, serving CodeSystems and ValueSets
uploaded to it, answers CodeSystem/$validate-code and ValueSet/$validate-code for what offline expansion cannot
(LOINC displays, value sets we do not hold or cannot expand). Through the validator, `validate --tx` and
`$validate?txServer=`. Failures a real server does not produce on demand (timeouts, 500s, redirects) are in
tests/validation/test_txserver.py."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from peers.hapi_server import HapiServer, HapiServerError, _unavailable

from service import create_app
from service.cli import cli
from service.config import Settings
from service.conformance.definitions import CORE_SD, load
from service.fhirjson import Finding
from service.validation import txserver
from service.validation.engine import Validator
from service.validation.policy import ValidationPolicy

LOINC = "http://loinc.org"
#: A subset of LOINC as a CodeSystem: codes and displays from /work/shared/reference/terminology.md (each read at
#: the source cited there: loinc.org, and the R5 observation-vitalsignresult value set for the vital signs).
LOINC_SUBSET = {"resourceType": "CodeSystem", "id": "loinc-subset", "url": LOINC, "status": "active",
                "content": "complete", "caseSensitive": True, "concept": [
                    {"code": "8867-4", "display": "Heart rate"},
                    {"code": "8480-6", "display": "Systolic blood pressure"},
                    {"code": "8462-4", "display": "Diastolic blood pressure"},
                    {"code": "9279-1", "display": "Respiratory rate"},
                    {"code": "44261-6", "display": "Patient Health Questionnaire 9 item (PHQ-9) total score "
                                                   "[Reported]"}]}
TEST = "http://ketamine-fhir.test"  # a reserved top-level domain (RFC 2606): nothing real lives there
#: A value set only the server holds (extensional, LOINC vital signs).
VITALS = {"resourceType": "ValueSet", "id": "vital-codes", "url": f"{TEST}/ValueSet/vital-codes", "status": "active",
          "compose": {"include": [{"system": LOINC, "concept": [{"code": "8867-4"}, {"code": "8480-6"},
                                                                {"code": "8462-4"}]}]}}
#: A code system only the server holds, and a value set of all of it that we hold too but cannot expand.
LETTERS = {"resourceType": "CodeSystem", "id": "letters", "url": f"{TEST}/CodeSystem/letters", "status": "active",
           "content": "complete", "concept": [{"code": "a", "display": "Alpha"}, {"code": "b", "display": "Beta"}]}
ALL_LETTERS = {"resourceType": "ValueSet", "id": "all-letters", "url": f"{TEST}/ValueSet/all-letters",
               "status": "active", "compose": {"include": [{"system": LETTERS["url"]}]}}
NARRATIVE = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}


def bound_profile(name: str, value_set: str) -> dict[str, Any]:
    """An Observation profile binding code (required) to `value_set`, held as a differential (snapshot generated)."""
    return {"resourceType": "StructureDefinition", "url": f"{TEST}/StructureDefinition/{name}", "name": name,
            "status": "draft", "kind": "resource", "abstract": False, "type": "Observation",
            "fhirVersion": "4.0.1", "derivation": "constraint", "baseDefinition": CORE_SD + "Observation",
            "differential": {"element": [{"id": "Observation.code", "path": "Observation.code",
                                          "binding": {"strength": "required", "valueSet": value_set}}]}}


@pytest.fixture(scope="module")
def tx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A HAPI FHIR JPA server of its own (the session's EHR peer must not learn our LOINC subset: its validator
    would then refuse every other LOINC code) holding the code systems and value sets above."""
    work = tmp_path_factory.mktemp("hapi-tx")
    try:
        server = HapiServer.start(log_path=work / "server.log")
    except (HapiServerError, OSError) as exc:
        _unavailable(str(exc))
        raise
    try:
        value_sets = next((r for r in server.metadata()["rest"][0]["resource"] if r["type"] == "ValueSet"), {})
        assert "validate-code" in {o["name"] for o in value_sets.get("operation", [])}, (
            "the HAPI peer was built before it registered ValueSet/$validate-code (PeerJpaConfig): a target/ copied "
            "from elsewhere looks newer than the sources; delete tests/peers/hapi/server/target to rebuild it")
        for resource in (LOINC_SUBSET, VITALS, LETTERS, ALL_LETTERS):
            url = f"{server.base_url}/{resource['resourceType']}/{resource['id']}"
            answer = requests.put(url, json=resource, headers={"Content-Type": "application/fhir+json"}, timeout=60)
            assert answer.status_code in (200, 201), answer.text
        txserver.forget()
        yield server.base_url
    finally:
        server.stop()
        txserver.forget()


@pytest.fixture(scope="module")
def validator() -> Validator:
    defs = load()
    return Validator(defs.with_own([*defs.own.values(), ALL_LETTERS, bound_profile("vitals", VITALS["url"]),
                                    bound_profile("letters", ALL_LETTERS["url"])]))


def observation(*codings: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "text": NARRATIVE, "status": "final",
            "code": {"coding": list(codings)}, **({"meta": {"profile": [f"{TEST}/StructureDefinition/{profile}"]}}
                                                  if profile else {})}


def loinc(code: str, display: str | None = None) -> dict[str, Any]:
    return {"system": LOINC, "code": code, **({"display": display} if display else {})}


def found(validator: Validator, resource: dict[str, Any], tx: str | None, **policy: Any) -> list[Finding]:
    return [f for f in validator.validate(resource, policy=ValidationPolicy(tx_server=tx, **policy))
            if f.severity != "information"]


# --- CodeSystem/$validate-code: codes and displays of code systems we do not hold -----------------------------

def test_a_loinc_code_with_its_display_is_valid(validator: Validator, tx: str) -> None:
    assert found(validator, observation(loinc("8867-4", "Heart rate")), tx) == []
    assert found(validator, observation(loinc("44261-6")), tx) == []  # no display: nothing to compare


def test_a_wrong_display_is_an_error_at_the_display_as_the_hl7_validator_reports_it(validator: Validator,
                                                                                      tx: str) -> None:
    wrong = observation(loinc("8480-6", "Heart rate"), loinc("8867-4", "heart   RATE"))  # case and spaces: fine
    assert found(validator, wrong, None) == []  # offline we cannot know
    [issue] = found(validator, wrong, tx)
    assert (issue.severity, issue.code, issue.expression) == ("error", "invalid", "Observation.code.coding[0].display")
    assert "'Systolic blood pressure'" in issue.message and tx in issue.message
    [lenient] = found(validator, wrong, tx, display_issues="warning")  # the HL7 CLI's -display-issues-are-warnings
    assert lenient.severity == "warning"


def test_a_code_the_code_system_lacks_is_an_error_at_the_code(validator: Validator, tx: str) -> None:
    [issue] = found(validator, observation(loinc("not-a-loinc-code")), tx)
    assert (issue.severity, issue.code, issue.expression) == ("error", "code-invalid",
                                                              "Observation.code.coding[0].code")
    assert found(validator, observation(loinc("not-a-loinc-code")), None) == []


def test_a_code_system_the_server_does_not_hold_either_is_a_warning(validator: Validator, tx: str) -> None:
    unknown = observation({"system": f"{TEST}/CodeSystem/nowhere", "code": "x"})
    [issue] = found(validator, unknown, tx)
    assert (issue.severity, issue.code, issue.expression) == ("warning", "not-found", "Observation.code.coding[0]")


# --- ValueSet/$validate-code: value sets we do not hold, or cannot expand -------------------------------------

def test_a_value_set_only_the_server_holds(validator: Validator, tx: str) -> None:
    assert found(validator, observation(loinc("8867-4"), profile="vitals"), tx) == []
    [outside] = found(validator, observation(loinc("44261-6"), profile="vitals"), tx)
    assert (outside.severity, outside.code, outside.expression) == ("error", "code-invalid", "Observation.code")
    assert VITALS["url"] in outside.message
    [offline] = found(validator, observation(loinc("44261-6"), profile="vitals"), None)
    assert (offline.severity, offline.code) == ("warning", "not-found"), offline  # unknown value set, unchecked


def test_a_value_set_we_hold_but_cannot_expand(validator: Validator, tx: str) -> None:
    letter = {"system": LETTERS["url"], "code": "a", "display": "Alpha"}
    assert found(validator, observation(letter, profile="letters"), tx) == []
    [offline] = found(validator, observation(letter, profile="letters"), None)
    assert (offline.severity, offline.code) == ("warning", "not-supported"), offline
    outside = found(validator, observation({**letter, "code": "z", "display": "Zeta"}, profile="letters"), tx)
    assert {(f.severity, f.expression) for f in outside} == {("error", "Observation.code"),  # not in the value set
                                                             ("error", "Observation.code.coding[0].code")}, outside


# --- a server that cannot be asked; the cache --------------------------------------------------------------------

def test_an_unreachable_server_gives_the_offline_answer_and_a_warning_once_then_no_waiting(
        validator: Validator) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/fhir"
    resource = observation(loinc("8867-4", "Heart beat"))
    [warning] = found(validator, resource, closed)
    assert (warning.severity, warning.code, warning.expression) == ("warning", "transient",
                                                                    "Observation.code.coding[0]")
    assert closed in warning.message and "offline only" in warning.message
    began = time.monotonic()
    assert found(validator, resource, closed) == [warning]  # not asked again for a while: no connection attempt
    assert time.monotonic() - began < 1.0


def test_answers_are_cached(validator: Validator, tx: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = txserver.server(tx)
    sent: list[str] = []
    real = client.session.request
    monkeypatch.setattr(client.session, "request", lambda method, url, **kw: sent.append(url) or real(method, url,
                                                                                                        **kw))
    resource = observation(loinc("9279-1", "Respiratory rate"))
    assert found(validator, resource, tx) == []
    assert found(validator, resource, tx) == []
    assert len(sent) == 1, sent


# --- the three ways to name a server: validate --tx, KFHIR_TX_URL, $validate's txServer ----------------------

def test_validate_tx(tx: str, tmp_path: Path) -> None:
    path = tmp_path / "wrong-display.json"
    path.write_text(json.dumps(observation(loinc("8867-4", "Heart beat"))), encoding="utf-8")
    runner = CliRunner()
    offline = runner.invoke(cli, ["validate", str(path)], env={"KFHIR_TX_URL": ""})
    assert offline.exit_code == 0, offline.output
    online = runner.invoke(cli, ["validate", "--tx", tx, "--format", "json", str(path)])
    assert online.exit_code == 1, online.output
    issues = json.loads(online.output)["issue"]
    assert [i["expression"][0] for i in issues if i["severity"] == "error"] == ["Observation.code.coding[0].display"]
    assert runner.invoke(cli, ["validate", str(path)], env={"KFHIR_TX_URL": tx}).exit_code == 1
    assert runner.invoke(cli, ["validate", "--tx", "n/a", str(path)], env={"KFHIR_TX_URL": tx}).exit_code == 0


def test_validate_operation_tx_server(tx: str, settings: Settings) -> None:
    app = create_app(settings.replace(tx_url=tx))
    app.config["TESTING"] = True
    client = app.test_client()
    body = observation(loinc("8867-4", "Heart beat"))

    def errors(query: str) -> list[str]:
        answer = client.post(f"/fhir/Observation/$validate{query}", json=body,
                             headers={"Content-Type": "application/fhir+json"})
        assert answer.status_code == 200, answer.get_json()
        return [i["expression"][0] for i in answer.get_json()["issue"] if i["severity"] == "error"]

    assert errors("") == ["Observation.code.coding[0].display"]  # KFHIR_TX_URL
    assert errors("?txServer=n/a") == []
    assert errors(f"?txServer={tx}") == ["Observation.code.coding[0].display"]
    refused = client.post("/fhir/Observation/$validate?txServer=http://169.254.169.254/fhir", json=body,
                          headers={"Content-Type": "application/fhir+json"})
    assert refused.status_code == 400 and "txServer" in refused.get_data(as_text=True)
    app.extensions["kfhir"].engine.dispose()
