"""The console's pages, signed in: what each shows, and Try it on good and bad input (both backends)."""
from __future__ import annotations

import html
import io
import json
import re
import tarfile

from admin.support import csrf
from factories import administration, assessment
from flask import Flask
from flask.testing import FlaskClient

from service.mapping import default_mapper
from service.mapping.review import rows


def text(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


def test_the_overview_counts_records_per_kind_and_resources_per_type(admin: FlaskClient, app: Flask) -> None:
    app.extensions["kfhir"].intake.submit("assessment", assessment())

    page = text(admin, "/admin/")

    assert ('<a href="/admin/records/assessment">assessment</a></th><td class="num">'
            '<a href="/admin/records/assessment">1</a></td>') in page
    assert '<a href="/admin/records/administration">0</a></td>' in page
    assert '<th scope="row">Observation</th><td class="num">1</td>' in page
    assert '<th scope="row">Patient</th><td class="num">1</td>' in page


def test_the_mappings_page_lists_every_kind_with_its_version(admin: FlaskClient) -> None:
    page = text(admin, "/admin/mappings")

    for spec in default_mapper().specs.values():
        assert f'href="/admin/mappings/{spec.kind}"' in page and spec.version in page


def test_a_mapping_page_shows_every_rule_the_engine_runs(admin: FlaskClient) -> None:
    spec = default_mapper().specs["administration"]

    page = text(admin, "/admin/mappings/administration")

    assert f"mapping version <strong>{spec.version}</strong>" in page
    for row in rows(spec, default_mapper().concepts):
        assert f"<code>{row.target}</code>" in page
    assert "SNOMED 47625008" in page  # the route's terminology, with its code
    assert 'Intravenous route' in page  # ... and its display
    for unmapped in spec.unmapped:
        assert f"<code>{unmapped.field}</code>" in page


def test_a_mapping_page_shows_a_worked_example_from_the_demo_data(admin: FlaskClient) -> None:
    page = text(admin, "/admin/mappings/administration")

    assert "<figcaption>Record</figcaption>" in page and "<figcaption>FHIR Bundle</figcaption>" in page
    assert "demo-clinic" in page and "&#34;resourceType&#34;: &#34;Bundle&#34;" in page


def test_a_long_mapping_page_has_jump_links_to_each_resource_and_back(admin: FlaskClient) -> None:
    page = text(admin, "/admin/mappings/administration")

    jump = page[page.index('id="jump"'):page.index("</ul>", page.index('id="jump"'))]
    targets = re.findall(r'href="#(rules-\d+|unmapped|example)"', jump)
    assert len(targets) >= 4 and all(f'id="{t}"' in page for t in targets)
    assert page.count('href="#jump"') == len([t for t in targets if t.startswith("rules-")])


def test_an_unknown_mapping_kind_is_a_404_page(admin: FlaskClient) -> None:
    response = admin.get("/admin/mappings/banana")

    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "no mapping for a record kind" in response.get_data(as_text=True)


def test_the_profiles_page_lists_our_structure_definitions(admin: FlaskClient) -> None:
    page = text(admin, "/admin/profiles")

    assert 'href="/admin/profiles/ketamine-administration"' in page
    assert 'href="/admin/profiles/session-number"' in page
    assert 'href="/admin/profiles/package.tgz"' in page


def test_a_profile_page_shows_elements_invariants_and_examples(admin: FlaskClient) -> None:
    page = text(admin, "/admin/profiles/ketamine-administration")

    assert "<code>MedicationAdministration.dosage.route</code>" in page
    assert "required: <code>https://ketamine-fhir.org/fhir/ValueSet/ketamine-routes" in page
    assert "http://snomed.info/sct|47625008" in page  # the value set's codes
    assert "<code>fixedCode: &#34;mg&#34;</code>" in page
    assert "<th scope=\"row\">ket-2</th>" in page and "dosage.rate.exists()" in page
    assert 'href="/admin/examples/examples/MedicationAdministration-iv-session-1.json"' in page
    assert "NO</td>" not in page  # every example validates as the manifest expects


def test_an_example_page_shows_its_validation_outcome_with_paths(admin: FlaskClient) -> None:
    page = text(admin, "/admin/examples/examples/invalid/ketamine-administration--no-route.json")

    assert "Expected: <strong>invalid</strong>" in page and "as expected" in page
    assert "<code>MedicationAdministration" in page


def test_only_examples_of_the_manifest_can_be_read(admin: FlaskClient) -> None:
    assert admin.get("/admin/examples/../package.json").status_code == 404
    assert admin.get("/admin/examples/examples/manifest.json").status_code == 404


def test_the_ig_package_downloads_as_a_fhir_npm_tgz(admin: FlaskClient) -> None:
    response = admin.get("/admin/profiles/package.tgz")

    assert response.status_code == 200 and response.mimetype == "application/gzip"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="ketamine-fhir')
    with tarfile.open(fileobj=io.BytesIO(response.data)) as tar:
        names = tar.getnames()
    assert "package/package.json" in names and "package/StructureDefinition-ketamine-administration.json" in names


def _try(client: FlaskClient, document: str, kind: str = "auto", **files: object) -> tuple[int, str]:
    data = {"csrf_token": csrf(client, "/admin/try"), "kind": kind, "document": document, **files}
    response = client.post("/admin/try", data=data, content_type="multipart/form-data")
    return response.status_code, response.get_data(as_text=True)


def test_try_maps_a_valid_record_to_a_bundle_and_stores_nothing(admin: FlaskClient, app: Flask) -> None:
    status, page = _try(admin, json.dumps(administration()), "administration")

    assert status == 200
    assert "Result: accepted" in page and "maps to a Bundle of" in page
    assert "&#34;MedicationAdministration&#34;" in page
    record = administration()
    assert app.extensions["kfhir"].store.find("administration", record["source"], record["external_id"]) is None


def test_try_shows_a_records_clinical_warnings(admin: FlaskClient) -> None:
    status, page = _try(admin, json.dumps(administration(dose_mg=70)), "administration")

    assert status == 200 and "Clinical warnings" in page


def test_try_shows_a_records_own_errors(admin: FlaskClient) -> None:
    status, page = _try(admin, json.dumps(assessment(score=99)), "assessment")

    assert status == 200 and "Result: refused" in page and "Errors in the record" in page


def test_try_validates_a_fhir_resource_and_names_each_issue_by_fhirpath(admin: FlaskClient) -> None:
    status, page = _try(admin, json.dumps({"resourceType": "Patient", "gender": "x"}))

    assert status == 200 and "Result: refused" in page
    assert "<code>Patient.gender</code>" in page


def test_try_reads_an_uploaded_file(admin: FlaskClient) -> None:
    upload = (io.BytesIO(json.dumps({"resourceType": "Patient", "gender": "female"}).encode()), "patient.json")

    status, page = _try(admin, "", file=upload)

    assert status == 200 and "Patient: 0 errors" in page


def test_try_explains_bad_input_and_never_fails(admin: FlaskClient) -> None:
    cases = {"": "empty", "{nope": "Malformed JSON", "[1, 2]": "must be a JSON object",
             '{"external_id": "x"}': "choose the record", "\"text\"": "must be a JSON object"}
    for document, message in cases.items():
        status, page = _try(admin, document)
        assert (status, message in page) == (422, True), (document, page)
    status, page = _try(admin, "{}", kind="banana")
    assert status == 422 and "Unknown kind" in page
    status, page = _try(admin, "[" * 100 + "]" * 100)
    assert status == 422 and "nest" in page.lower()


def test_an_upload_over_the_body_limit_is_a_413_page(app: Flask, admin: FlaskClient) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1024

    response = admin.post("/admin/try", data={"document": "x" * 4096}, content_type="multipart/form-data")

    assert response.status_code == 413 and response.mimetype == "text/html"


def test_each_issue_links_to_its_element_and_the_element_is_marked(admin: FlaskClient) -> None:
    status, page = _try(admin, json.dumps({"resourceType": "Patient", "gender": "x", "name": [{"given": [1]}]}))

    assert status == 200
    assert '<a href="#at-Patient.gender"><code>Patient.gender</code></a>' in page
    assert '<span id="at-Patient.gender" class="flag" data-note="error">  &#34;gender&#34;: &#34;x&#34;,' in page
    assert '<a href="#at-Patient.name[0].given[0]">' in page


def test_an_invalid_example_marks_the_element_its_issue_is_about(admin: FlaskClient) -> None:
    page = text(admin, "/admin/examples/examples/invalid/ketamine-administration--route-local-code.json")

    assert 'class="flag" data-note="error"' in page and '<a href="#at-MedicationAdministration' in page


def test_the_worked_example_marks_the_elements_each_rule_wrote(admin: FlaskClient) -> None:
    page = text(admin, "/admin/mappings/administration")

    # R1 is the first rule (status); R14 writes the route (after the medication's three rules and the concomitant
    # medications' supportingInformation): each links to its element in the Bundle
    assert '<a href="#ex-Bundle.entry[0].resource.status">in example</a>' in page
    assert '<span id="ex-Bundle.entry[0].resource.status" class="flag" data-note="R1">' in page
    assert 'id="ex-Bundle.entry[0].resource.dosage.route" class="flag" data-note="R14"' in page


def test_trace_finds_for_every_rule_the_elements_it_wrote() -> None:
    from service.admin.mappings import example

    found = example("administration")

    assert found is not None
    spec = default_mapper().specs["administration"]
    assert len(found.produced) == sum(len(role.rules) for role in spec.roles)
    assert found.produced[0] == ["Bundle.entry[0].resource.status"]
    assert sum(1 for paths in found.produced if paths) > len(found.produced) // 2


def test_try_shows_a_high_severity_finding_in_red_never_a_plain_accepted(admin: FlaskClient) -> None:
    status, page = _try(admin, json.dumps(administration(dose_mg=4970, weight_kg=70)), "administration")  # 71 mg/kg

    assert status == 200
    assert "Result: accepted with 1 high-severity finding" in page and "Result: accepted</h2>" not in page
    assert '<p class="error" role="alert">' in page
    assert '<tr class="severity-high"><td class="error">high</td>' in page and "anaesthetic range" in page


def test_the_rules_page_lists_every_rule_with_its_source(admin: FlaskClient) -> None:
    from service.domain.findings import CATALOGUE

    response = admin.get("/admin/rules")
    assert response.status_code == 200
    found = response.get_data(as_text=True)
    for rule in CATALOGUE.values():
        assert f"<code>{rule.name}</code>" in found and html.escape(rule.source).replace("&#x27;", "&#39;") in found
    assert "diastolic" in found[found.index('id="limits-table"'):]
