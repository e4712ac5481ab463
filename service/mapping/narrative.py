"""Resource.text of a mapped resource: the spec's title and lines with the record's values, as escaped XHTML."""
from __future__ import annotations

import html
import re
from functools import cache
from typing import Any

from service.mapping.spec import Narrative, lookup

_FIELD = re.compile(r"\{([\w.$]+)\}")


def narrative(spec: Narrative, scope: Any, record: dict[str, Any]) -> dict[str, str]:
    """Resource.text: the title and every line whose fields are all present, as escaped XHTML."""
    lines = []
    for line in spec.lines:
        values = {}
        for name in _fields(line):
            value = lookup(record, name[2:]) if name.startswith("$.") else lookup(scope, name)
            if value is None or value == []:
                break
            values[name] = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        else:
            lines.append("".join(values[part] if i % 2 else part for i, part in enumerate(_parts(line))))
    items = "".join(f"<li>{html.escape(line, quote=False)}</li>" for line in lines)
    body = f"<p><b>{html.escape(spec.title, quote=False)}</b></p>" + (f"<ul>{items}</ul>" if items else "")
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


@cache
def _fields(line: str) -> list[str]:
    """The fields a spec line names (a spec's lines are few and fixed: found once each)."""
    return _FIELD.findall(line)


@cache
def _parts(line: str) -> list[str]:
    """The line split at its fields: text, field, text, …, text (what _FIELD.sub would replace, found once)."""
    return _FIELD.split(line)
