"""The test helpers the benchmark shares with the test suite, loaded by file path.

tests/ is no package (pytest puts it on sys.path); loading the two modules by path avoids importing
`validation` or `peers` as top-level names, which another installed distribution could shadow. What they
import in turn (tests/support: the Maven build) is found at the end of sys.path, behind everything installed."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def _load(relative: str, name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    path = TESTS / relative
    if str(TESTS) not in sys.path:
        sys.path.append(str(TESTS))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and friends look their module up while it executes
    spec.loader.exec_module(module)
    return module


def corpus_module() -> ModuleType:
    """tests/validation/corpus.py: `mutated(example_paths)`."""
    return _load("validation/corpus.py", "_kfhir_bench_corpus")


def hapi_module() -> ModuleType:
    """tests/peers/hapi_validator.py: build(), java_command(), HapiValidatorError."""
    return _load("peers/hapi_validator.py", "_kfhir_bench_hapi_validator")
