"""What the resource store gives back (service/store/stored.py): a version's content as written."""
from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

import pytest

from service.store.stored import restamped, versioned

AT = datetime(2026, 1, 2, 3, 4, 5, 6789)
#: contents, each with its text as version 2 of "new" written at AT
VERSIONS = [
    ({"status": "final", "resourceType": "Observation", "meta": {"profile": ["p"], "versionId": "9"}, "id": "old",
      "code": {}},
     '{"resourceType": "Observation", "id": "new", "meta": {"profile": ["p"], "versionId": "2", "lastUpdated": '
     '"2026-01-02T03:04:05.006Z"}, "status": "final", "code": {}}'),
    ({"resourceType": "Patient"},
     '{"resourceType": "Patient", "id": "new", "meta": {"versionId": "2", "lastUpdated": "2026-01-02T03:04:05.006Z"}}'),
    ({"resourceType": "Patient", "active": True, "meta": None, "id": None},
     '{"resourceType": "Patient", "id": "new", "meta": {"versionId": "2", "lastUpdated": "2026-01-02T03:04:05.006Z"}, '
     '"active": true}'),
]


@pytest.mark.parametrize(("content", "written"), VERSIONS)
def test_a_version_begins_with_its_type_id_and_meta_then_the_rest_in_order(content: dict[str, Any],
                                                                          written: str) -> None:
    before = copy.deepcopy(content)
    assert json.dumps(versioned(content, "new", 2, AT)) == written
    assert content == before  # the caller's content is not changed


@pytest.mark.parametrize(("content", "written"), VERSIONS)
def test_a_version_made_before_and_stamped_later_is_the_version_made_then(content: dict[str, Any],
                                                                       written: str) -> None:
    """A create's version is made once, before its unit, and stamped with the unit's time in it (restamped): the
    same text as versioned() at that time, and the version made before left as it was (answered ahead)."""
    early = versioned(content, "new", 2, datetime(2025, 12, 31, 23, 59, 59, 999999))
    before = copy.deepcopy(early)
    assert json.dumps(restamped(early, AT)) == written == json.dumps(versioned(content, "new", 2, AT))
    assert early == before
