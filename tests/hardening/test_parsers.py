"""Crash safety of the parsers and the validator on random bytes: a clear refusal or findings, never an exception.

The inputs are random bytes, and our examples with bytes flipped, inserted or cut (which keeps most of the
document valid JSON and reaches the validator). The JSON parser may only raise BadRequest (or Unprocessable for a NUL); what it returns
the validator must judge without raising; `ketamine-fhir validate` and `import` answer with an exit status
and a message, never a traceback."""
from __future__ import annotations

import json
from functools import cache

import pytest
from click.testing import CliRunner
from hardening.fuzzing import FUZZ, REQUESTS
from hypothesis import given, settings
from hypothesis import strategies as st

from service.cli import cli
from service.errors import BadRequest, RequestError, Unprocessable
from service.jsondoc import parse_json
from service.resources import profiles_dir
from service.validation import default_validator
from service.validation.engine import Validator

EXAMPLES = sorted(p.read_bytes() for p in (profiles_dir() / "examples").glob("*.json") if p.name != "manifest.json")
MANY = settings(FUZZ, max_examples=REQUESTS // 2)
FEW = settings(FUZZ, max_examples=60)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """An example with a few bytes flipped, inserted or cut."""
    data = bytearray(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "cut"]))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b"[", b"{", b'"', b"\\u", b"\\u0000", b"-0e"]))
        else:
            del data[at:at + draw(st.integers(1, 20))]
    return bytes(data)


BYTES = st.binary(max_size=400) | damaged()


@cache
def validator() -> Validator:
    return default_validator()


@MANY
@given(raw=BYTES)
def test_the_json_parser_refuses_bad_bytes_with_a_clear_error_only(raw: bytes) -> None:
    try:
        doc = parse_json(raw, 64)
    except RequestError as exc:  # malformed (400), or well-formed but holding NUL (422)
        assert exc.detail and type(exc) in (BadRequest, Unprocessable)
        return
    assert doc == json.loads(raw.decode("utf-8"))  # what it accepts is exactly the JSON it was sent
    validator().validate(doc)  # judged, never raised


@FEW
@given(raw=BYTES)
def test_validate_on_a_file_of_random_bytes_answers_with_an_exit_status(
        tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "random.json"
    path.write_bytes(raw)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
