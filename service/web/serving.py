"""Production serving: gunicorn's pre-fork workers, configured from our settings, logging our JSON lines."""
from __future__ import annotations

import gc
import logging
import sys
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from service.config import Settings
from service.web.balance import BalancedWorker, ConnectionCounts

#: How long a worker's thread may hold the GIL while another waits for it (s; Python's default is 0.005). A thread
#: writing gives the GIL up at every SQL statement and waits that long to get it back from a thread that computes
#: (the convoy effect): a create's write, some 15 statements in the writers' turn, took 33 ms instead of 10 with
#: 8 threads in one process, and every other writer of the database waited for it (store/group.py).
SWITCH_INTERVAL_S = 0.0005
#: A worker's requests before it moves what they built to last (compiled SQL, caches, the parts of the mapping and the
#: search built on first use) out of the garbage collector's reach, as it does with the app once built (settle_worker).
SETTLE_AFTER_REQUESTS = 300


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """Each worker builds its own app (no preload): database connections must not cross a fork."""
    # a slot per worker, and spares: pre_fork gives a new worker one no live worker holds, child_exit frees it
    counts = ConnectionCounts(2 * settings.workers + 2)
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        # threads: requests in hand at once per worker; above 1 gunicorn runs its gthread worker, whose requests
        # overlap their waits (the audit's fsync: service/security/grouped.py) and keep connections alive
        "threads": settings.threads,
        # gthread's, but spreading keep-alive clients across the workers (service/web/balance.py)
        "worker_class": BalancedWorker if settings.threads > 1 else "sync",
        "pre_fork": counts.pre_fork,
        "child_exit": counts.child_exit,
        # a worker silent this long is killed and replaced; its open transaction is rolled back
        "timeout": settings.request_timeout,
        # on SIGTERM workers finish the requests in hand for up to this long, then stop
        "graceful_timeout": settings.graceful_timeout,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "preload_app": False,
        "accesslog": None,  # kfhir.access logs each request by route template; gunicorn's would log the URL
        "logconfig_dict": logging_config(settings.log_level),
        "logger_class": QuietAccessLogger,
        "post_request": after_request,
    }


class QuietAccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, whose access line is built only when gunicorn.access would log it: gunicorn builds each
    request's atoms (its headers and environ read, a strftime) whenever a logging config is given, then drops the line
    at WARNING (kfhir.access logs requests by route): 5 % of a served read's CPU (py-spy)."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)


def settle_worker() -> None:
    """What this worker holds so far made permanent for the garbage collector (gc.freeze), as the arbiter does with the
    validator (service.validation.settle): the objects a worker builds after the fork (the app, its engine and
    metadata, then what its first requests compile and cache: 35,000-52,000) were walked by every full collection, a
    few every 15 s under load, each a pause of 11-50 ms for every thread of the worker (the creates' p99); frozen,
    a full collection walks what the requests since left, 1-3 ms.
    Frozen objects are still freed by reference counting; a cycle among the objects of a request in hand at that
    moment would outlive it (once, a few objects)."""
    gc.collect()
    gc.freeze()


def after_request(worker: Any, _request: Any, _environ: Any, _response: Any) -> None:
    """gunicorn's post_request hook (in the thread that served it): settle once the first requests have warmed up."""
    global _settled  # noqa: PLW0603 - one flag per worker process
    if not _settled and worker.nr >= SETTLE_AFTER_REQUESTS:
        _settled = True
        settle_worker()


_settled = False


def logging_config(level: str) -> dict[str, Any]:
    """gunicorn's own lines (boot, worker exits, signals) through the same JSON handler as ours."""
    quiet: dict[str, Any] = {"handlers": [], "propagate": True}
    return {
        "version": 1, "disable_existing_loggers": False,
        "root": {"level": level.upper(), "handlers": ["json"]},
        "loggers": {"gunicorn.error": quiet | {"level": "INFO"}, "gunicorn.access": quiet | {"level": "WARNING"}},
        "handlers": {"json": {"()": "service.web.logs.JsonHandler"}},
    }


class ProductionServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from service import create_app

        sys.setswitchinterval(SWITCH_INTERVAL_S)  # in each worker (no preload)
        app = create_app(self.settings)
        settle_worker()
        return app


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT (graceful: requests in hand finish), then return."""
    from service.mapping import default_mapper, main_profiles
    from service.validation import settle

    # In the arbiter, before it forks: each worker starts with the validator compiled and warmed (not on its first
    # request), its pages shared, and its objects out of the garbage collector's reach (service/validation). The
    # validator holds no connection or thread, so it may cross the fork; the app (database) is built per worker.
    # The mapping specs too (loaded first, so settle's freeze takes them): a worker's first create or update parsed
    # their YAML (main_profiles, then default_mapper: 430-510 ms of CPU each), in every thread that came before it
    # was loaded, so a worker's first creates took 2.3 s under load (the closed loop's p99 when a worker's first
    # requests fell in it).
    default_mapper()
    main_profiles()
    settle()
    ProductionServer(settings).run()
