"""bench/servers.py: the PostgreSQL of the serving run takes PG_SETTINGS the server can take."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import servers


@pytest.mark.parametrize(("configure", "expected"), [("'--with-llvm' '--with-lz4' '--with-zstd'", {"lz4"}),
                                                     ("'--with-llvm'", set())])
def test_lz4_compression_is_set_only_on_a_server_built_with_it(tmp_path: Path, configure: str,
                                                               expected: set[str]) -> None:
    config = tmp_path / "pg_config"
    config.write_text(f"#!/bin/sh\necho \"{configure}\"\n", encoding="utf-8")
    config.chmod(0o755)
    assert set(servers.pg_settings(tmp_path).values()) == expected


def test_a_server_without_pg_config_beside_it_is_not_given_lz4(tmp_path: Path) -> None:
    """A pg_ctl found on PATH may have no pg_config beside it: the run goes on without lz4 (it raised
    FileNotFoundError)."""
    assert servers.pg_settings(tmp_path) == {}
