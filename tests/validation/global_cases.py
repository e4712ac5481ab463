"""Global profiles (ImplementationGuide.global) with a real published R4 guide: Da Vinci Plan-Net 1.2.0
(hl7.fhir.us.davinci-pdex-plan-net on npm; scripts/fetch_packages.sh puts it in .cache/).

No R4 guide the npm registry serves here declares `global` (Plan-Net 1.2.0 and IPS 2.0.0 do not; US Core has no
published version there), so the guide that declares them is the user's own ImplementationGuide file naming
Plan-Net's profiles, loaded beside the package as the HL7 validator CLI loads one (`-ig file`). Documents: Plan-Net's
own examples of three types without their meta.profile (so only a global profile can hold them to Plan-Net), each
as published and broken by dropping an element the Plan-Net profile requires and R4 does not.

    cases()            name → (resource type, document, whether Plan-Net's profile accepts it)
    global_guide()     an ImplementationGuide declaring the three profiles global
"""
from __future__ import annotations

import copy
import json
import tarfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / ".cache" / "hl7.fhir.us.davinci-pdex-plan-net-1.2.0.tgz"
BASE = "http://hl7.org/fhir/us/davinci-pdex-plan-net/StructureDefinition/"
#: resource type → (its Plan-Net profile, an element that profile requires and R4 does not, the example used)
TYPES = {
    "Practitioner": (BASE + "plannet-Practitioner", "active", "Practitioner-JoeSmith"),
    "Organization": (BASE + "plannet-Organization", "address", "Organization-Hospital"),
    "Location": (BASE + "plannet-Location", "status", "Location-HospLoc1"),
}


def package() -> Path:
    if not PACKAGE.exists():
        pytest.fail(f"{PACKAGE} is missing: `make test` downloads it (scripts/fetch_packages.sh)")
    return PACKAGE


@cache
def _examples() -> dict[str, dict[str, Any]]:
    wanted = {f"package/example/{example}.json" for _, _, example in TYPES.values()}
    with tarfile.open(package(), "r:gz") as tar:
        return {Path(m.name).stem: json.load(tar.extractfile(m))  # type: ignore[arg-type]
                for m in tar.getmembers() if m.name in wanted}


def cases() -> dict[str, tuple[str, dict[str, Any], bool]]:
    out = {}
    for kind, (profile, required, example) in TYPES.items():
        doc = copy.deepcopy(_examples()[example])
        assert doc["meta"].pop("profile") == [profile]
        if not doc["meta"]:
            del doc["meta"]
        assert required in doc
        out[f"{kind}-as-published"] = (kind, doc, True)
        broken = {k: v for k, v in doc.items() if k != required}
        out[f"{kind}-without-{required}"] = (kind, broken, False)
    return out


def global_guide() -> dict[str, Any]:
    return {"resourceType": "ImplementationGuide", "id": "plan-net-global", "status": "draft",
            "url": "https://example.org/fhir/ImplementationGuide/plan-net-global", "name": "PlanNetGlobal",
            "packageId": "example.plan-net-global", "fhirVersion": ["4.0.1"],
            "dependsOn": [{"uri": "http://hl7.org/fhir/us/davinci-pdex-plan-net/ImplementationGuide/"
                                  "hl7.fhir.us.davinci-pdex-plan-net", "packageId": "hl7.fhir.us.davinci-pdex-plan-net",
                           "version": "1.2.0"}],
            "global": [{"type": kind, "profile": profile} for kind, (profile, _, _) in TYPES.items()]}
