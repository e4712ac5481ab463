"""FHIR $validate over HTTP, and FHIR-style errors (OperationOutcome) under /fhir."""
from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from service import create_app
from service.config import Settings
from service.errors import ConfigError
from service.resources import profiles_dir

OURS = "https://ketamine-fhir.org/fhir/StructureDefinition/"
SESSION = json.loads((profiles_dir() / "examples" / "MedicationAdministration-iv-session-3.json").read_text())


def post(client: FlaskClient, path: str, body: object) -> dict:
    response = client.post(path, data=json.dumps(body), content_type="application/fhir+json")
    assert response.mimetype == "application/fhir+json"
    return {"status": response.status_code, **response.get_json()}


def errors(outcome: dict) -> list[str]:
    return [i["expression"][0] for i in outcome["issue"] if i["severity"] == "error" and "expression" in i]


def test_a_valid_session_has_no_errors(client: FlaskClient) -> None:
    outcome = post(client, "/fhir/MedicationAdministration/$validate", SESSION)
    assert outcome["status"] == 200 and errors(outcome) == []


def test_an_invalid_session_is_200_with_the_errors_and_their_paths(client: FlaskClient) -> None:
    broken = {k: v for k, v in SESSION.items() if k != "context"}
    outcome = post(client, "/fhir/$validate", broken)
    assert outcome["status"] == 200 and errors(outcome) == ["MedicationAdministration.context"]
    issue = next(i for i in outcome["issue"] if i["severity"] == "error")
    assert issue["code"] == "required" and "minimum required = 1" in issue["details"]["text"]


def test_profile_from_parameters_or_query(client: FlaskClient) -> None:
    patient = {"resourceType": "Patient"}
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient}, {"name": "profile", "valueCanonical": OURS + "ketamine-administration"}]}
    assert any("is for MedicationAdministration" in i["details"]["text"] for i in post(client, "/fhir/$validate", params)["issue"])
    outcome = post(client, f"/fhir/$validate?profile={OURS}ketamine-administration", patient)
    assert any("is for MedicationAdministration" in i["details"]["text"] for i in outcome["issue"])


def test_unknown_profile_is_400(client: FlaskClient) -> None:
    outcome = post(client, "/fhir/$validate?profile=https://example.org/nope", {"resourceType": "Patient"})
    assert outcome["status"] == 400 and outcome["issue"][1]["expression"] == ["profile"]


def test_parameters_without_resource_is_400(client: FlaskClient) -> None:
    outcome = post(client, "/fhir/$validate", {"resourceType": "Parameters", "parameter": []})
    assert outcome["status"] == 400


def test_unknown_fhir_path_is_a_404_operation_outcome(client: FlaskClient) -> None:
    response = client.get("/fhir/nothing/here")
    assert response.status_code == 404 and response.get_json()["resourceType"] == "OperationOutcome"


def test_wrong_method_is_405_operation_outcome(client: FlaskClient) -> None:
    response = client.get("/fhir/$validate")
    assert response.status_code == 405 and response.get_json()["issue"][0]["code"] == "not-supported"


def test_issues_of_a_raw_resource_carry_line_and_column(client: FlaskClient) -> None:
    text = '{\n  "resourceType": "Patient",\n  "birthDate": "1980-13-01"\n}'
    response = client.post("/fhir/$validate", data=text, content_type="application/fhir+json")
    issue = next(i for i in response.get_json()["issue"] if i["expression"] == ["Patient.birthDate"])
    assert issue["location"] == ["Patient.birthDate", "Line[3] Col[16]"]
    assert {"url": "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-line", "valueInteger": 3} \
        in issue["extension"]


# --- the validation policy: HL7's defaults, each a parameter and a setting ------------------------

UNHELD = {"resourceType": "Patient", "extension": [{"url": "http://example.org/fhir/StructureDefinition/x",
                                                    "valueString": "x"}]}


def unheld_severities(outcome: dict) -> list[str]:
    return [i["severity"] for i in outcome["issue"] if "Unknown extension" in i["details"]["text"]]


def test_an_unheld_extension_is_an_error_by_default(client: FlaskClient) -> None:
    assert unheld_severities(post(client, "/fhir/$validate", UNHELD)) == ["error"]


def test_policy_parameters_in_the_query_and_in_parameters(client: FlaskClient) -> None:
    assert unheld_severities(post(client, "/fhir/$validate?unknown-extension=warning", UNHELD)) == ["warning"]
    assert unheld_severities(post(client, "/fhir/$validate?extension-domain=http://example.org/", UNHELD)) == []
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": UNHELD}, {"name": "extension-domain", "valueString": "*"}]}
    assert unheld_severities(post(client, "/fhir/$validate", params)) == ["information"]


def test_a_wrong_display_is_an_error_unless_display_issues_says_otherwise(client: FlaskClient) -> None:
    """tests/validation/test_displays.py has the rule; here the parameter."""
    encounter = {"resourceType": "Encounter", "id": "e", "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                           "display": "Ambulant"}}

    def severities(outcome: dict) -> list[str]:
        return [i["severity"] for i in outcome["issue"] if "Wrong display" in i["details"]["text"]]
    assert severities(post(client, "/fhir/$validate", encounter)) == ["error"]
    assert severities(post(client, "/fhir/$validate?display-issues=warning", encounter)) == ["warning"]


def test_our_profiles_only_when_asked(client: FlaskClient) -> None:
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/p"}, "code": {"text": "Asthma"}}
    assert errors(post(client, "/fhir/Condition/$validate", condition)) == []
    assert errors(post(client, "/fhir/Condition/$validate?our-profiles=true", condition)) != []


def test_a_target_type_not_here_is_checked_only_when_asked(client: FlaskClient) -> None:
    """tests/validation/test_rules.py has the rule (the HL7 CLI's -assume-valid-rest-references); here the
    parameter, as a query and in Parameters."""
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "performer": [{"reference": "Encounter/e1"}]}
    assert errors(post(client, "/fhir/$validate", observation)) == []
    assert errors(post(client, "/fhir/$validate?assume-valid-rest-references=true", observation)) != []
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": observation}, {"name": "assume-valid-rest-references", "valueBoolean": True}]}
    assert errors(post(client, "/fhir/$validate", params)) != []
    assert post(client, "/fhir/$validate?assume-valid-rest-references=maybe", observation)["status"] == 400


def test_a_bad_policy_parameter_is_400(client: FlaskClient) -> None:
    assert post(client, "/fhir/$validate?unknown-profile=loud", UNHELD)["status"] == 400
    assert post(client, "/fhir/$validate?our-profiles=maybe", UNHELD)["status"] == 400


def test_the_service_setting_changes_the_default(settings: Settings) -> None:
    app = create_app(settings.replace(validation_unknown_extension="warning"))
    app.config["TESTING"] = True
    try:
        assert unheld_severities(post(app.test_client(), "/fhir/$validate", UNHELD)) == ["warning"]
    finally:
        app.extensions["kfhir"].engine.dispose()


def test_a_bad_policy_setting_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="KFHIR_VALIDATION_UNKNOWN_EXTENSION"):
        Settings.load({"validation_unknown_extension": "loud"}, environ={})


def test_a_tx_server_the_service_does_not_allow_is_400(client: FlaskClient) -> None:
    """A call may not point this service's requests anywhere (KFHIR_TX_URL and KFHIR_TX_ALLOWED only)."""
    refused = post(client, "/fhir/$validate?txServer=http://169.254.169.254/latest", UNHELD)
    assert refused["status"] == 400 and "txServer" in json.dumps(refused)
    assert unheld_severities(post(client, "/fhir/$validate?txServer=n/a", UNHELD)) == ["error"]
    params = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": UNHELD},
                                                          {"name": "txServer", "valueUri": "http://10.0.0.1/fhir"}]}
    assert post(client, "/fhir/$validate", params)["status"] == 400


@pytest.mark.parametrize("setting", [{"tx_url": "ftp://tx.test"}, {"tx_allowed": "http://a.test/fhir tx.test"},
                                     {"tx_timeout": 0}, {"validation_display_issues": "loud"}])
def test_a_bad_tx_setting_stops_start_up(setting: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="KFHIR_(TX|VALIDATION_DISPLAY)"):
        Settings.load(setting, environ={})


@pytest.mark.parametrize("name", ["plain ASCII", "Zoë 名 ☕", "DEL \x7f, tab\t", "a literal \\u0041"])
def test_a_written_resource_is_answered_as_json_dumps_writes_it_whatever_its_characters(
        client: FlaskClient, name: str) -> None:
    """A create or an update answers with the text it stored where that is what json.dumps(ensure_ascii=False)
    writes, and with its content encoded again where the stored text escaped a character (\\uXXXX): the same text."""
    made = client.post("/fhir/Patient", data=json.dumps({"resourceType": "Patient", "name": [{"text": name}]}),
                       content_type="application/fhir+json")
    assert made.status_code == 201, made.get_json()
    assert made.get_data(as_text=True) == json.dumps(made.get_json(), ensure_ascii=False)
    assert made.get_json()["name"] == [{"text": name}]
    changed = made.get_json() | {"gender": "female"}
    updated = client.put(f"/fhir/Patient/{changed['id']}", data=json.dumps(changed),
                         content_type="application/fhir+json")
    assert updated.status_code == 200, updated.get_json()
    assert updated.get_data(as_text=True) == json.dumps(updated.get_json(), ensure_ascii=False)
    assert updated.get_json()["name"] == [{"text": name}] and updated.get_json()["meta"]["versionId"] == "2"
    pretty = client.post("/fhir/Patient?_pretty=true", data=json.dumps({"resourceType": "Patient"}),
                         content_type="application/fhir+json")
    assert pretty.get_data(as_text=True) == json.dumps(pretty.get_json(), ensure_ascii=False, indent=2)
