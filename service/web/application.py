"""The Flask class the service's app is made of (service.create_app)."""
from __future__ import annotations

from collections.abc import Callable
from types import FunctionType
from typing import Any

from flask import Flask

#: functions whose answer an app remembers (its hooks, views and error handlers: a few dozen); past this it asks Flask
KNOWN_CALLABLES = 1_024


class App(Flask):
    """Flask, which asks whether a hook or view is a coroutine function once per callable, not at each call: Flask's
    ensure_sync asks inspect (bound methods unwrapped, partials followed, code flags read) for every hook of every
    request, ~11 a read (~33 K instructions a request)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synced: dict[Any, Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        known = self._synced.get(func) if type(func) is FunctionType else None
        if known is not None:
            return known
        made = super().ensure_sync(func)
        # plain functions only (hooks, views, error handlers: registered once); a bound method is made anew at each
        # access (a class-based view's dispatch_request, for each request), so remembering it would only fill the dict
        if type(func) is FunctionType and len(self._synced) < KNOWN_CALLABLES:
            self._synced[func] = made
        return made
