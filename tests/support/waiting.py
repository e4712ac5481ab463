"""Waiting for something another thread or process does: polls until it holds, fails saying what never came."""
from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0, every: float = 0.01) -> float:
    """Seconds until `condition()` is true; AssertionError naming `what` after `timeout` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(every)
    return time.monotonic() - started
