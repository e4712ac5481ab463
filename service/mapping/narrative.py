"""Resource.text of a mapped resource: the spec's title and lines with the record's values, as escaped XHTML."""
from __future__ import annotations

import html
import re
from functools import cache
from typing import Any

from service.mapping.spec import Narrative, lookup

_FIELD = re.compile(r"\{([\w.$]+)\}")
#: a line's fields in order (each as often as named): (its name without `$.`, whether it reads the whole record,
#: whether the name is dotted: else read with dict.get)
Fields = tuple[tuple[str, bool, bool], ...]


def narrative(spec: Narrative, scope: Any, record: dict[str, Any]) -> dict[str, str]:
    """Resource.text: the title and every line whose fields are all present, as escaped XHTML."""
    head, lines = _parts(spec.title, spec.lines)
    items = []
    for fields, template in lines:
        values = []
        for name, whole, dotted in fields:
            source = record if whole else scope
            value = source.get(name) if not dotted and source.__class__ is dict else lookup(source, name)
            if value is None or value == []:
                break
            values.append(", ".join(map(str, value)) if isinstance(value, list) else str(value))
        else:
            text = template.format(*values)  # escaped as _escaped does, in line: ~25 lines a record
            if "&" in text or "<" in text or ">" in text:
                text = html.escape(text, quote=False)
            items.append(f"<li>{text}</li>")
    return {"status": "generated", "div": f"{head}<ul>{''.join(items)}</ul></div>" if items else f"{head}</div>"}


def _escaped(text: str) -> str:
    """html.escape(text, quote=False), without its three replaces where none has anything to replace (most lines)."""
    return html.escape(text, quote=False) if "&" in text or "<" in text or ">" in text else text


@cache
def _parts(title: str, lines: tuple[str, ...]) -> tuple[str, tuple[tuple[Fields, str], ...]]:
    """Of a spec's narrative (few and fixed: worked out once each): the div's start with its title, and _lines."""
    return f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{_escaped(title)}</b></p>', _lines(lines)


@cache
def _lines(lines: tuple[str, ...]) -> tuple[tuple[Fields, str], ...]:
    """Per line of a spec (few and fixed: worked out once each), its fields and the line as a str.format template
    taking their values in that order (its other text with braces doubled)."""
    out = []
    for line in lines:
        parts = _FIELD.split(line)  # text, field, text, …, text
        fields = tuple((name[2:], True, "." in name[2:]) if name.startswith("$.") else (name, False, "." in name)
                       for name in parts[1::2])
        template = "{}".join(text.replace("{", "{{").replace("}", "}}") for text in parts[0::2])
        out.append((fields, template))
    return tuple(out)
