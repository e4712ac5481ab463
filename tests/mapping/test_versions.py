"""Mapping versions mean something: a version names one rule set (mappings/versions.json records each with its
digest, so changing rules without bumping the version fails here), and resources carry the exact version."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.mapping import Mapper
from service.mapping.engine import TAG_SYSTEM
from service.mapping.spec import folder, load_all, load_file

LOCK = folder() / "versions.json"


def released() -> dict[str, dict[str, str]]:
    data = json.loads(LOCK.read_text(encoding="utf-8"))
    return {kind: versions for kind, versions in data.items() if not kind.startswith("_")}


@pytest.mark.parametrize("kind", sorted(load_all()))
def test_each_version_names_one_rule_set(kind: str) -> None:
    spec = load_all()[kind]
    recorded = released().get(kind, {})
    assert spec.version in recorded, (
        f"mappings/{kind}.yaml version {spec.version} is not in mappings/versions.json: add it with digest {spec.digest}")
    assert recorded[spec.version] == spec.digest, (
        f"the rules of mappings/{kind}.yaml changed but its version is still {spec.version}: bump `version` and record "
        f"the new version in mappings/versions.json with digest {spec.digest}")


def test_a_rule_change_changes_the_digest_and_the_tag(tmp_path: Path, mapper: Mapper) -> None:
    source = folder() / "assessment.yaml"
    changed = tmp_path / "assessment.yaml"
    changed.write_text(source.read_text(encoding="utf-8").replace("why: When the score was taken", "why: When taken", 1)
                       if "why: When the score was taken" in source.read_text(encoding="utf-8")
                       else source.read_text(encoding="utf-8").replace("why:", "why: (edited)", 1), encoding="utf-8")
    (tmp_path / "people.yaml").write_text((folder() / "people.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    before, after = load_file(source), load_file(changed)
    assert before.version == after.version and before.digest != after.digest
    assert before.exact_version != after.exact_version
    comment_only = tmp_path / "comment.yaml"
    comment_only.write_text("# a comment changes no rule\n" + source.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_file(comment_only).digest == before.digest


def test_resources_carry_the_exact_version(mapper: Mapper) -> None:
    from mapping.support import golden_record
    for kind, spec in mapper.specs.items():
        bundle = mapper.to_bundle(kind, golden_record(kind))
        for entry in bundle["entry"]:
            tags = [t for t in entry["resource"]["meta"]["tag"] if t["system"] == TAG_SYSTEM]
            assert [t["code"] for t in tags] == [f"{kind}/{spec.version}+{spec.digest[:10]}"]
