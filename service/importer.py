"""Bulk import of records from JSON Lines or CSV, line by line: valid lines stored, errors reported.

CSV layout: one record per row; the header names dotted paths into the record
(`patient.identifier.value`); list items are numbered (`vitals.0.systolic`,
`patient.name.given.0`); empty cells are left out; each cell is read as its field's type
(integers, numbers, `true`/`false`, text for dates and codes).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields

from service.domain.intake import Intake
from service.domain.kinds import schema_of
from service.errors import BadRequest, RequestError
from service.jsondoc import parse_json

MAX_LINE_DEPTH = 64
#: the rows, numbered by file line, handed to `import_file`'s progress wrapper and taken back from it
Rows = list[tuple[int, Any]]
Progress = Callable[[Rows], AbstractContextManager[Iterable[tuple[int, Any]]]]


@dataclass
class Report:
    kind: str
    lines: int = 0
    created: int = 0
    unchanged: int = 0
    warnings: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def import_file(intake: Intake, path: Path, kind: str, progress: Progress | None = None) -> Report:
    """Submit each line (or CSV row) of `path` as a `kind` record; `progress` wraps the rows (a progress bar)."""
    rows = list(_csv_rows(path, kind) if path.suffix.lower() == ".csv" else _jsonl_rows(path))
    report = Report(kind)
    with (progress or nullcontext)(rows) as shown:
        for line, payload in shown:
            _import_one(intake, kind, line, payload, report)
    return report


def _import_one(intake: Intake, kind: str, line: int, payload: Any, report: Report) -> None:
    report.lines += 1
    try:
        if isinstance(payload, RequestError):
            raise payload
        outcome = intake.submit(kind, payload)
    except RequestError as exc:
        issues = [{"field": i.field, "message": i.message} for i in exc.issues]
        report.errors.append({"line": line, "message": exc.detail, "issues": issues})
        return
    report.created += outcome.created
    report.unchanged += not outcome.created
    report.warnings += len(outcome.record.warnings)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if raw.strip():
                try:
                    yield number, parse_json(raw.rstrip(b"\r\n"), MAX_LINE_DEPTH)
                except RequestError as exc:
                    yield number, exc


def _csv_rows(path: Path, kind: str) -> Iterator[tuple[int, Any]]:
    schema = schema_of(kind)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: spreadsheets often write a byte-order mark
    except UnicodeDecodeError as exc:
        yield 1, BadRequest(f"{path.name} is not UTF-8 text (byte {exc.start}); save the CSV as UTF-8.")
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        if None in row:  # DictReader files cells beyond the header under the key None
            yield reader.line_num, BadRequest(f"The row has {len(row[None])} more cells than the header has columns.")
            continue
        record: dict[str, Any] = {}
        for column, cell in row.items():
            if column and cell not in (None, ""):
                _put(record, column.strip().split("."), _typed(schema, column, cell))
        yield reader.line_num, _lists(record)


def _put(target: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            return
    target[parts[-1]] = value


def _lists(node: Any) -> Any:
    """Dicts keyed 0, 1, 2 … (numbered CSV columns) become lists, in order."""
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


def _typed(schema: Schema, column: str, cell: str) -> Any:
    """The cell as its field's JSON type; text the field cannot take stays text for the schema to report."""
    leaf = _field_at(schema, column.strip().split("."))
    try:
        if isinstance(leaf, fields.Boolean):
            return {"true": True, "false": False}.get(cell.strip().lower(), cell)
        if isinstance(leaf, fields.Integer):
            return int(cell)
        if isinstance(leaf, fields.Float):
            return float(cell)
    except ValueError:
        pass
    return cell


def _field_at(schema: Schema, parts: list[str]) -> Any:
    node: Any = schema
    for part in parts:
        if isinstance(node, fields.List) and part.isdigit():
            node = node.inner
            continue
        if isinstance(node, fields.Nested):
            node = node.schema
        if not isinstance(node, Schema):
            return None
        node = next((f for name, f in node.fields.items() if (f.data_key or name) == part), None)
    return node
