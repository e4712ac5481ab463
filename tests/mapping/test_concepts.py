"""Local codes ↔ standard codes through the IG's ConceptMaps, and when the local code travels too."""
from __future__ import annotations

import pytest

from service.conformance.definitions import load
from service.mapping.concepts import ConceptError, ConceptIndex

SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.fixture(scope="module")
def concepts() -> ConceptIndex:
    return ConceptIndex(load())


def test_an_equivalent_target_is_sent_alone_and_reads_back(concepts: ConceptIndex) -> None:
    route = concepts.system("domain-route")
    coding, with_local = route.forward("intravenous")
    assert coding == {"system": SNOMED, "code": "47625008", "display": "Intravenous route (qualifier value)"}
    assert not with_local
    assert route.back(SNOMED, "47625008") == "intravenous"


def test_a_narrower_product_code_from_an_ehr_reads_back_as_its_medication(concepts: ConceptIndex) -> None:
    medication = concepts.system("domain-medication")
    assert medication.back(RXNORM, "238084") == "ketamine"      # ketamine 50 MG/ML Injectable Solution
    assert medication.back(RXNORM, "2201625") == "esketamine"   # esketamine Nasal Spray [Spravato]
    assert medication.forward("ketamine")[0]["code"] == "6130"


def test_a_wider_target_travels_with_the_local_code(concepts: ConceptIndex) -> None:
    indication = concepts.system("domain-indication")
    coding, with_local = indication.forward("mdd-acute-suicidality", SNOMED)
    assert coding is not None and coding["code"] == "370143000" and with_local
    assert indication.back(SNOMED, "370143000") == "mdd"   # the SNOMED code alone means plain MDD
    assert indication.back(indication.url, "mdd-acute-suicidality") == "mdd-acute-suicidality"


def test_an_unmatched_code_has_only_the_local_coding(concepts: ConceptIndex) -> None:
    coding, with_local = concepts.system("domain-causality").forward("unrelated")
    assert coding is None and with_local


def test_a_target_system_can_be_chosen_among_the_maps(concepts: ConceptIndex) -> None:
    indication = concepts.system("domain-indication")
    assert indication.forward("ptsd", SNOMED)[0]["code"] == "47505003"
    assert indication.forward("ptsd", "http://hl7.org/fhir/sid/icd-10-cm")[0]["code"] == "F43.10"


def test_our_own_code_systems_map_to_themselves(concepts: ConceptIndex) -> None:
    phase = concepts.system("ketamine-protocol-phase")
    assert phase.forward("induction") == (None, True)
    assert phase.local_coding("induction")["display"] == "Induction"


def test_unknown_codes_and_systems_are_errors(concepts: ConceptIndex) -> None:
    with pytest.raises(ConceptError, match="no mapping for local code 'teleport'"):
        concepts.system("domain-route").forward("teleport")
    with pytest.raises(ConceptError, match="no CodeSystem"):
        concepts.system("no-such-system")
