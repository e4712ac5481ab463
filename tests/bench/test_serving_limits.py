"""The serving benchmark's 1,000-entry transaction meets only the entry limit it documents: with
KFHIR_MAX_BUNDLE_ENTRIES=1000 and nothing else (bench/servers.TRANSACTION_1000), the JSON limits accept it."""
from __future__ import annotations

import json

import pytest

from bench import serving
from bench.servers import TRANSACTION_1000
from service.config import Settings
from service.errors import PayloadTooLarge
from service.jsondoc import parse_json


def bench_settings() -> Settings:
    return Settings.load({}, environ=TRANSACTION_1000)


def test_the_bench_transaction_at_its_entry_limit_passes_the_json_limits_the_entry_limit_brings() -> None:
    settings = bench_settings()
    bundle = serving.transaction_bundle(settings.max_bundle_entries)
    raw = json.dumps(bundle).encode()
    items, values = settings.bundle_json_limits()

    assert parse_json(raw, settings.max_json_depth, items, values) == bundle
    with pytest.raises(PayloadTooLarge):  # the values limit of any other body would refuse it
        parse_json(raw, settings.max_json_depth, settings.max_json_items, settings.max_json_values)
