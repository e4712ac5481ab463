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
#: tags and whitespace from the start, then a character that is text after TAG.sub, html.unescape and strip() alike
#: (not whitespace, not a tag's `<`, not an entity's `&`): txt-2 holds without building the text
TEXT_FIRST = re.compile(r"(?:<[^>]*>|\s)*[^\s<&]")


def check_narrative(value: str, expr: str, run: Run) -> None:
    # a link needs `href`, a local image `<img`: a narrative with neither (ours) has only txt-2 to answer
    if "href" in value or "<img" in value:
        _links(value, expr, run)
    if "<img" not in value and TEXT_FIRST.match(value) is None and not html.unescape(TAG.sub(" ", value)).strip():
        run.add("error", "invariant", expr, "Constraint failed: txt-2: 'The narrative SHALL have some non-whitespace "
                                            "content'")


def _links(value: str, expr: str, run: Run) -> None:
    """Local hyperlinks and images resolve: to an anchor of the narrative, an image also to a contained resource."""
    targets = set(TARGET.findall(value))
    for anchor in sorted(set(HREF.findall(value)) - targets):
        run.add("error", "value", expr, f"Hyperlink '#{anchor}' in the narrative does not resolve.")
    resource: dict[str, Any] = run.resources[-1] if run.resources else {}
    contained = {c.get("id") for c in as_list(resource.get("contained")) if isinstance(c, dict)}
    for image in sorted(set(IMAGE.findall(value)) - targets - contained):
        run.add("error", "value", expr, f"Image source '#{image}' in the narrative does not resolve (R4 narrative: "
                                        f"a local image is a contained resource).")
