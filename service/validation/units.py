"""UCUM unit syntax, through ucumvert's grammar of the UCUM specification; results cached per unit."""
from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _parser() -> Any:
    from ucumvert import get_ucum_parser  # type: ignore[import-untyped]

    return get_ucum_parser()


@cache
def valid_ucum(unit: str) -> bool:
    """Whether `unit` is a well-formed UCUM expression of known units (`mg/kg`, `mm[Hg]`; not `mEq`)."""
    try:
        _parser().parse(unit)
    except Exception:  # noqa: BLE001 - lark raises several exception types for a bad unit
        return False
    return True
