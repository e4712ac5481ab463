"""The search features a real client library sends, through fhirpy against a live `ketamine-fhir serve`: counts,
_total, _summary, _elements, _revinclude, chains, _has, :missing, :exact and :contains (raw HTTP: tests/search)."""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome as FhirpyOutcome
from support.databases import fresh_database
from support.serving import LiveServer, live_server

FHIR = "application/fhir+json"
MRN = "https://clinic.example/mrn"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server on SQLite; afterwards: nothing was answered with a 5xx."""
    workdir = tmp_path_factory.mktemp("fhirpy")
    with fresh_database("sqlite", None, workdir) as url, live_server(url, workdir) as live:
        yield live
    log = live.log.read_text()
    assert not re.search(r'HTTP/1\.1\S*" 5\d\d ', log) and "Traceback" not in log, log


@pytest.fixture(scope="module")
def ehr(server: LiveServer) -> SyncFHIRClient:
    return SyncFHIRClient(server.base, authorization=server.headers["Authorization"],
                          extra_headers={"Accept": FHIR, "Content-Type": FHIR})


@pytest.fixture(scope="module")
def tag() -> str:
    """One family name for this module's patients, so searches see only them."""
    return f"Zq{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def charts(ehr: SyncFHIRClient, tag: str) -> dict[str, str]:
    """Two patients of family `tag` (one written Ñ…), Ana with two heart rates (one with a category), Bo one."""
    made: dict[str, str] = {}
    for name, family in (("ana", f"Ñ{tag}"), ("bo", f"N{tag}")):
        patient = ehr.resource("Patient", name=[{"family": family, "given": [name]}],
                               identifier=[{"system": MRN, "value": f"{tag}-{name}"}])
        patient.save()
        made[name] = str(patient.id)
    for key, who, category in (("o1", "ana", "vital-signs"), ("o2", "ana", None), ("o3", "bo", None)):
        observation = ehr.resource("Observation", status="final",
                                   code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                                   subject={"reference": f"Patient/{made[who]}"},
                                   effectiveDateTime="2026-03-02T10:00:00Z")
        if category:
            observation["category"] = [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}]
        observation.save()
        made[key] = str(observation.id)
    return made


def ids(found: list) -> set[str]:  # type: ignore[type-arg]
    return {str(r.id) for r in found}


def test_count(ehr: SyncFHIRClient, charts: dict[str, str], tag: str) -> None:
    """fhirpy's count() sends _count=0&_totalMethod=count and reads Bundle.total."""
    assert ehr.resources("Patient").search(family=tag[1:]).count() == 0
    assert ehr.resources("Observation").search(patient=charts["ana"]).count() == 2
    assert ehr.resources("Patient").search(_summary="count", family__contains=tag).count() == 2


def test_string_modifiers(ehr: SyncFHIRClient, charts: dict[str, str], tag: str) -> None:
    patients = ehr.resources("Patient")
    assert ids(patients.search(family=f"n{tag}").fetch_all()) == {charts["ana"], charts["bo"]}
    assert ids(patients.search(family__exact=f"Ñ{tag}").fetch_all()) == {charts["ana"]}
    assert ids(patients.search(family__contains=tag.upper()).fetch_all()) == {charts["ana"], charts["bo"]}


def test_chains_and_has(ehr: SyncFHIRClient, charts: dict[str, str], tag: str) -> None:
    observations = ehr.resources("Observation")
    by_mrn = observations.search(**{"subject:Patient.identifier": f"{MRN}|{tag}-ana"}).fetch_all()
    assert ids(by_mrn) == {charts["o1"], charts["o2"]}
    assert ids(observations.search(**{"patient.name": f"n{tag}"}).fetch_all()) == {
        charts["o1"], charts["o2"], charts["o3"]}
    assert ids(observations.search(**{"patient.identifier": f"{tag}-bo"}).fetch_all()) == {charts["o3"]}
    with_vitals = ehr.resources("Patient").has("Observation", "patient", category="vital-signs")
    assert ids(with_vitals.search(family__contains=tag).fetch_all()) == {charts["ana"]}


def test_missing(ehr: SyncFHIRClient, charts: dict[str, str]) -> None:
    mine = ehr.resources("Observation").search(_id=",".join(charts[k] for k in ("o1", "o2", "o3")))
    assert ids(mine.search(category__missing=True).fetch_all()) == {charts["o2"], charts["o3"]}
    assert ids(mine.search(category__missing=False).fetch_all()) == {charts["o1"]}


def test_revinclude_elements_summary_and_total(ehr: SyncFHIRClient, charts: dict[str, str]) -> None:
    bundle = ehr.resources("Patient").search(_id=charts["ana"]).revinclude("Observation", "subject").fetch_raw()
    assert {(e["search"]["mode"], e["resource"]["id"]) for e in bundle.entry} == {
        ("match", charts["ana"]), ("include", charts["o1"]), ("include", charts["o2"])}
    cut = ehr.resources("Observation").search(_id=charts["o1"]).elements("subject").fetch()[0]
    assert "effectiveDateTime" not in cut and cut["subject"]["reference"] == f"Patient/{charts['ana']}"
    assert cut["meta"]["tag"][-1]["code"] == "SUBSETTED"
    untotalled = ehr.resources("Observation").search(_id=charts["o1"], _total="none").fetch_raw()
    assert "total" not in untotalled and len(untotalled.entry) == 1
    summary = ehr.resources("Observation").search(_id=charts["o1"], _summary="true").fetch()[0]
    assert "code" in summary and "category" not in summary  # R4: Observation.category is not isSummary
    assert summary["meta"]["tag"][-1]["code"] == "SUBSETTED"


def test_a_search_we_cannot_do_is_an_operation_outcome(ehr: SyncFHIRClient) -> None:
    with pytest.raises(FhirpyOutcome) as refused:
        ehr.resources("Observation").search(**{"subject:Patient.shoe": "42"}).fetch()
    assert "shoe" in str(refused.value)


PSYCHOTHERAPY = "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-concurrent-psychotherapy"
NPI = "http://hl7.org/fhir/sid/us-npi"


def test_concurrent_psychotherapy_is_created_read_and_found_by_each_of_its_search_parameters(
        ehr: SyncFHIRClient, charts: dict[str, str], tag: str) -> None:
    """The Procedure route as an EHR's client uses it: a Procedure held to our psychotherapy profile (the therapy in
    code.text, no code being confirmed for it: terminology.md), created, read, updated and searched."""
    prescriber = ehr.resource("Practitioner", identifier=[{"system": NPI, "value": "9990000025"}],
                              name=[{"family": "Osei", "text": "Dr Osei"}])
    prescriber.save()
    therapy = ehr.resource("Procedure", meta={"profile": [PSYCHOTHERAPY]}, status="in-progress",
                           identifier=[{"system": "https://clinic.example/therapy", "value": f"{tag}-cbt"}],
                           code={"text": "Cognitive behavioural therapy, weekly"},
                           subject={"reference": f"Patient/{charts['ana']}"},
                           asserter={"reference": f"Practitioner/{prescriber.id}"},
                           performer=[{"actor": {"reference": f"Practitioner/{prescriber.id}"}}],
                           performedPeriod={"start": "2026-02-16"})
    therapy.save()
    read = ehr.reference("Procedure", therapy.id).to_resource()
    assert (read["meta"]["versionId"], read["code"]["text"], read["meta"]["profile"]) == (
        "1", "Cognitive behavioural therapy, weekly", [PSYCHOTHERAPY])

    procedures = ehr.resources("Procedure")
    for name, value in (("_id", therapy.id), ("identifier", f"https://clinic.example/therapy|{tag}-cbt"),
                        ("patient", charts["ana"]), ("subject", f"Patient/{charts['ana']}"),
                        ("status", "in-progress"), ("performer", f"Practitioner/{prescriber.id}"),
                        ("date", "ge2026-02-16"), ("patient.identifier", f"{MRN}|{tag}-ana")):
        assert ids(procedures.search(**{name: value}).fetch_all()) == {str(therapy.id)}, name
    for name, value in (("patient", charts["bo"]), ("date", "lt2026-02-16"), ("status", "completed")):
        assert procedures.search(**{name: value}).count() == 0, name

    therapy["status"] = "completed"  # the course of therapy ended
    therapy.save()
    assert ehr.reference("Procedure", therapy.id).to_resource()["meta"]["versionId"] == "2"
    assert ids(procedures.search(status="completed", patient=charts["ana"]).fetch_all()) == {str(therapy.id)}
    with pytest.raises(FhirpyOutcome) as refused:  # held to the profile: the therapy must be described
        ehr.resource("Procedure", meta={"profile": [PSYCHOTHERAPY]}, status="in-progress",
                     subject={"reference": f"Patient/{charts['ana']}"}).save()
    assert "Procedure.code" in str(refused.value)
