"""Checks of a narrative's XHTML that its FHIRPath (htmlChecks(), which fhirpathpy lacks) would make: local links
and images resolve, and there is something to read (txt-2)."""
from __future__ import annotations

import html
import re
from typing import Any

from service.validation.references import as_list
from service.validation.run import Run

TAG = re.compile(r"<[^>]*>")
HREF = re.compile(r"""href\s*=\s*["']#([^"']+)["']""")
IMAGE = re.compile(r"""<img\b[^>]*\bsrc\s*=\s*["']#([^"']+)["']""")
TARGET = re.compile(r"""(?:name|id)\s*=\s*["']([^"']+)["']""")


def check_narrative(value: str, expr: str, run: Run) -> None:
    targets = set(TARGET.findall(value))
    for anchor in sorted(set(HREF.findall(value)) - targets):
        run.add("error", "value", expr, f"Hyperlink '#{anchor}' in the narrative does not resolve.")
    resource: dict[str, Any] = run.resources[-1] if run.resources else {}
    contained = {c.get("id") for c in as_list(resource.get("contained")) if isinstance(c, dict)}
    for image in sorted(set(IMAGE.findall(value)) - targets - contained):
        run.add("error", "value", expr, f"Image source '#{image}' in the narrative does not resolve (R4 narrative: "
                                        f"a local image is a contained resource).")
    if "<img" not in value and not html.unescape(TAG.sub(" ", value)).strip():
        run.add("error", "invariant", expr, "Constraint failed: txt-2: 'The narrative SHALL have some non-whitespace "
                                            "content'")
