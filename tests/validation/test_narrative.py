"""The narrative's checks (service/validation/narrative.py): txt-2's quick answer is the full one's."""
from __future__ import annotations

import html
import random

import pytest

from service.validation.narrative import TAG, check_narrative
from service.validation.policy import ValidationPolicy
from service.validation.run import Run

TXT_2 = "Constraint failed: txt-2: 'The narrative SHALL have some non-whitespace content'"
PIECES = ["<div xmlns=\"http://www.w3.org/1999/xhtml\">", "</div>", "<p>", "</p>", "<br/>", "<", ">", " ", "\n", "\t",
          "\u00a0", "\u2003", "\x1f", "\x00", "&nbsp;", "&#32;", "&#x20;", "&amp;", "&", "&lt;", "&gt;", "x", "é",
          "<img src=\"#m\"/>", "<a href=\"#a\">", "</a>", "<a name=\"a\">", "href", "<img", "<!-- c -->"]


def _txt_2_fails(value: str) -> bool:
    """txt-2 as the text it reads: the tags dropped, the entities read, the whitespace stripped (no image)."""
    return "<img" not in value and not html.unescape(TAG.sub(" ", value)).strip()


def _findings(value: str) -> list[tuple[str, str, str]]:
    run = Run({}, must_support=False, policy=ValidationPolicy())
    run.resources.append({"resourceType": "Patient", "contained": [{"resourceType": "Binary", "id": "m"}]})
    check_narrative(value, "Patient.text.div", run)
    return [(f.severity, f.code, f.message) for f in run.findings]


@pytest.mark.parametrize("value", [
    "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p><b>Patient</b></p></div>", "<div> </div>", "<div>&nbsp;</div>",
    "<div>&#32;x</div>", "<div>\u00a0</div>", "<div>\x1f</div>", "<div>\x00</div>", "<div", "<div>< p</div>", "x", "",
    "<div><!-- only a comment --></div>", "<div><a href=\"#a\">t</a></div>", "<div><img src=\"#m\"/></div>",
])
def test_txt_2_is_the_text_after_tags_entities_and_whitespace(value: str) -> None:
    assert ((TXT_2 in [m for _, _, m in _findings(value)]) == _txt_2_fails(value))


def test_txt_2_agrees_with_the_full_text_on_random_narratives() -> None:
    rng = random.Random(7)  # noqa: S311 - narratives drawn again from the seed
    for _ in range(5000):
        value = "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 8)))
        assert (TXT_2 in [m for _, _, m in _findings(value)]) == _txt_2_fails(value), value


def test_links_and_images_are_checked_only_where_they_can_be() -> None:
    assert _findings("<div><a href=\"#nowhere\">t</a></div>") == [
        ("error", "value", "Hyperlink '#nowhere' in the narrative does not resolve.")]
    assert _findings("<div><img src=\"#gone\"/><img src=\"#m\"/></div>") == [
        ("error", "value", "Image source '#gone' in the narrative does not resolve (R4 narrative: a local image is a "
                           "contained resource).")]
    assert _findings("<div><a href=\"#a\" name=\"a\">t</a></div>") == []
