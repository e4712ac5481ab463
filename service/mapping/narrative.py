"""Resource.text of a mapped resource: the spec's title and lines with the record's values, as escaped XHTML."""
from __future__ import annotations

import html
import re
from functools import cache
from typing import Any

from service.mapping.spec import Narrative, lookup

_FIELD = re.compile(r"\{([\w.$]+)\}")
#: a line's fields in order (each as often as named): (its name without `$.`, whether it reads the whole record)
Fields = tuple[tuple[str, bool], ...]


def narrative(spec: Narrative, scope: Any, record: dict[str, Any]) -> dict[str, str]:
    """Resource.text: the title and every line whose fields are all present, as escaped XHTML."""
    items = []
    for fields, template in _lines(spec.lines):
        values = []
        for name, whole in fields:
            value = lookup(record if whole else scope, name)
            if value is None or value == []:
                break
            values.append(", ".join(map(str, value)) if isinstance(value, list) else str(value))
        else:
            items.append(f"<li>{html.escape(template.format(*values), quote=False)}</li>")
    body = f"<p><b>{html.escape(spec.title, quote=False)}</b></p>" + (f"<ul>{''.join(items)}</ul>" if items else "")
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


@cache
def _lines(lines: tuple[str, ...]) -> tuple[tuple[Fields, str], ...]:
    """Per line of a spec (few and fixed: worked out once each), its fields and the line as a str.format template
    taking their values in that order (its other text with braces doubled)."""
    out = []
    for line in lines:
        parts = _FIELD.split(line)  # text, field, text, …, text
        fields = tuple((name[2:], True) if name.startswith("$.") else (name, False) for name in parts[1::2])
        template = "{}".join(text.replace("{", "{{").replace("}", "}}") for text in parts[0::2])
        out.append((fields, template))
    return tuple(out)
