"""Helpers for the mapping tests: records in canonical form, the golden files, labelled Bundles."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from service.domain.kinds import KINDS
from service.mapping.engine import TAG_SYSTEM

GOLDEN = Path(__file__).parent / "golden"


def canonical(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """A record as the intake stores it: loaded by the schema and dumped again."""
    schema = KINDS[kind].schema()
    return schema.dump(schema.load({k: v for k, v in record.items() if not k.startswith("_")}))  # type: ignore[no-any-return]


def golden_record(kind: str) -> dict[str, Any]:
    return canonical(kind, json.loads((GOLDEN / f"{kind}.record.json").read_text(encoding="utf-8")))


def golden_bundle(kind: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{kind}.bundle.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def labelled(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle with generated ids replaced by readable labels, so expectations can be written by hand.

    An entry's label is `<Type identifier-value>` (our business identifier, or the person's own
    identifier); ids, fullUrls and references to it use the label instead of the UUID. The
    narrative (`text`) is left out.
    """
    labels: dict[str, str] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        identifier = resource["identifier"]
        identifier = identifier[0] if isinstance(identifier, list) else identifier
        label = f"<{resource['resourceType']} {identifier['value']}>"
        labels[entry["fullUrl"]] = label
        if "id" in resource:
            labels[resource["id"]] = label

    def relabel(node: Any) -> Any:
        if isinstance(node, list):
            return [relabel(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: relabel(v) for k, v in node.items()}
        if out.get("system") == TAG_SYSTEM:  # the rules' digest changes with every rule: test_versions pins it
            out = {k: re.sub(r"\+[0-9a-f]{10}$", "+<digest>", v) if isinstance(v, str) else v for k, v in out.items()}
        ref = out.get("reference")
        if isinstance(ref, str):
            if ref in labels:
                out["reference"] = labels[ref]
            elif isinstance(out.get("identifier"), dict):  # another record's resource, named by identifier
                out["reference"] = f"<{ref.split('/')[0]} {out['identifier']['value']}>"
        return out

    entries = []
    for entry in bundle["entry"]:
        # ids become labels; the generated narrative is checked on its own (test_golden)
        resource = relabel({k: v for k, v in entry["resource"].items() if k not in ("id", "text")})
        request = dict(entry["request"])
        head, _, tail = request["url"].partition("/")
        if tail in labels:
            request["url"] = f"{head}/{labels[tail]}"
        entries.append({"fullUrl": labels[entry["fullUrl"]], "request": request, "resource": resource})
    return {**bundle, "entry": entries}


def numbers(value: Any) -> Any:
    """84 and 84.0 are the same FHIR decimal value (the record stores numbers as floats): whole floats as ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers(v) for v in value]
    return value
