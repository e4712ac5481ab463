"""settle(): the validator a long-lived process starts with is warmed and out of the garbage collector's reach."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from service.config import Settings
from service.web import serving

# In a process of its own: a freeze here would hold every object of the test session for the rest of it.
SETTLED = """
import gc, json
from service.resources import profiles_dir
from service.validation import settle

validator = settle()
frozen, left = gc.get_freeze_count(), len(gc.get_objects())
for path in sorted((profiles_dir() / "examples").glob("*-*.json")):
    assert not [f for f in validator.validate(json.loads(path.read_text())) if f.severity in ("error", "fatal")]
gc.collect()
tracked = gc.get_objects()
print(json.dumps({"frozen": frozen, "left": left, "after": len(tracked), "enabled": gc.isenabled(),
                  "validator_tracked": any(o is validator or o is validator.__dict__ for o in tracked)}))
"""


def test_settle_freezes_the_warmed_validator_so_collections_do_not_walk_it() -> None:
    out = json.loads(subprocess.run([sys.executable, "-c", SETTLED], capture_output=True, text=True, check=True,
                                    timeout=300).stdout)
    assert out["frozen"] > 50_000  # the compiled definitions, the plans and the libraries their checks use
    assert out["left"] < 100 and not out["validator_tracked"]
    # warmed: validating every shipped example again compiles almost nothing the collector would have to walk
    assert out["after"] - out["left"] < out["frozen"] // 100
    assert out["enabled"]  # cycles made after start-up are still collected


def test_the_production_server_settles_the_validator_before_gunicorn_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping specs are loaded in the arbiter too, before settle's freeze, instead of by the first creates and
    updates of each worker (every thread that came before they were loaded parsed their YAML)."""
    steps: list[str] = []
    monkeypatch.setattr("service.mapping.default_mapper", lambda: steps.append("mapper"))
    monkeypatch.setattr("service.mapping.main_profiles", lambda: steps.append("main profiles"))
    monkeypatch.setattr("service.validation.settle", lambda: steps.append("settle"))
    monkeypatch.setattr(serving.ProductionServer, "run", lambda self: steps.append("gunicorn"))
    serving.serve(Settings.load(environ={}))
    assert steps == ["mapper", "main profiles", "settle", "gunicorn"]
