"""`ketamine-fhir mappings show|diff|export-conceptmaps` and `ketamine-fhir map`, in-process (tests/cli/support.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli.support import Done, kfhir
from mapping.support import GOLDEN

from service.mapping.spec import folder
from service.resources import profiles_dir


def run(*args: str, cwd: Path) -> Done:
    return kfhir(*args, cwd=cwd)


def test_show_renders_every_kind_as_a_table(tmp_path: Path) -> None:
    done = run("mappings", "show", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for title in ("Treatment plan →", "Dosing session →", "Adverse event →", "Outcome score →"):
        assert title in done.stdout
    assert 'intravenous → SNOMED 47625008 "Intravenous route (qualifier value)"' in done.stdout
    assert "Not mapped" in done.stdout and "lot_number" in done.stdout


def test_show_markdown_and_json_carry_the_same_rules(tmp_path: Path) -> None:
    markdown = run("mappings", "show", "administration", "--format", "markdown", cwd=tmp_path).stdout
    document = json.loads(run("mappings", "show", "administration", "--format", "json", cwd=tmp_path).stdout)
    rules = document[0]["rules"]
    assert document[0]["kind"] == "administration" and len(rules) > 40
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line
                  and not line.startswith("| record field")]
    assert len(table_rows) == len(rules) + len(document[0]["unmapped"])
    dose = next(r for r in rules if r["source"] == "dose_mg" and r["target"].endswith("dosage.dose"))
    assert dose["terminology"] == ["UCUM mg"] and dose["direction"] == "both ways"


def test_diff_names_added_removed_and_changed_rules(tmp_path: Path) -> None:
    data = yaml.safe_load((folder() / "assessment.yaml").read_text(encoding="utf-8"))
    released, data["version"] = data["version"], "9.0.0"
    rules = data["resources"][0]["rules"]
    rules[:] = [r for r in rules if r.get("field") != "plan_external_id"]        # removed
    next(r for r in rules if r.get("field") == "score")["why"] = "The total."    # changed
    rules.append({"to": "note.text", "transform": "fixed", "value": "From the clinic", "why": "Provenance."})
    data["unmapped"] = [{"field": "plan_external_id", "why": "Plans are not exchanged with this EHR yet."}]
    new = tmp_path / "assessment.yaml"
    new.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    done = run("mappings", "diff", str(folder() / "assessment.yaml"), str(new), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"# assessment: {released} → 9.0.0"
    assert "- Observation (score): plan_external_id → basedOn: The treatment plan this score measures, " \
           "by its business identifier." in lines
    assert any(line.startswith("+ Observation (score): — → note.text") for line in lines)
    assert any(line.startswith("~ Observation (score): score → valueInteger: why:") for line in lines)
    assert any(line.startswith("+ unmapped plan_external_id") for line in lines)
    same = run("mappings", "diff", str(folder() / "assessment.yaml"), str(folder() / "assessment.yaml"), cwd=tmp_path)
    assert (same.returncode, same.stdout.strip()) == (0, "no changes")


def test_diff_refuses_files_of_different_kinds(tmp_path: Path) -> None:
    done = run("mappings", "diff", str(folder() / "assessment.yaml"), str(folder() / "adverse-event.yaml"),
               cwd=tmp_path)
    assert done.returncode == 2 and "maps assessment but" in done.stderr


def test_export_conceptmaps_writes_the_maps_the_rules_use(tmp_path: Path) -> None:
    done = run("mappings", "export-conceptmaps", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "out").glob("*.json"))
    assert "ConceptMap-domain-route-to-snomed.json" in written and len(written) == 8
    for name in written:
        exported = json.loads((tmp_path / "out" / name).read_text(encoding="utf-8"))
        assert exported == json.loads((profiles_dir() / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", ["treatment-plan", "administration", "adverse-event", "assessment"])
def test_map_previews_a_record_file(tmp_path: Path, kind: str) -> None:
    record = json.loads((GOLDEN / f"{kind}.record.json").read_text(encoding="utf-8"))
    record.pop("_scenario")
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    done = run("map", "--kind", kind, str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    bundle = json.loads(done.stdout)
    assert bundle["type"] == "transaction" and "0 errors" in done.stderr
    as_json = json.loads(run("map", "--kind", kind, str(path), "--format", "json", cwd=tmp_path).stdout)
    assert as_json["bundle"] == bundle and as_json["outcome"]["resourceType"] == "OperationOutcome"


def test_map_refuses_a_record_that_breaks_its_contract_or_the_profiles(tmp_path: Path) -> None:
    record = json.loads((GOLDEN / "assessment.record.json").read_text(encoding="utf-8"))
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record), encoding="utf-8")  # still has `_scenario`: not a contract field
    done = run("map", "--kind", "assessment", str(path), cwd=tmp_path)
    assert done.returncode == 1 and "_scenario: Unknown field." in done.stdout
    record.pop("_scenario")
    record["patient"]["identifier"]["system"] = "clinic mrn"
    path.write_text(json.dumps(record), encoding="utf-8")
    refused = json.loads(run("map", "--kind", "assessment", str(path), "--format", "json", cwd=tmp_path).stdout)
    assert refused["operation_outcome"]["resourceType"] == "OperationOutcome"
    path.write_text("{", encoding="utf-8")
    assert run("map", "--kind", "assessment", str(path), cwd=tmp_path).returncode == 2
