"""`ketamine-fhir serve`: the development server, or gunicorn with --production."""
from __future__ import annotations

import signal
import sys

import click

from service.cli import context


@click.command()
@click.option("--host", default=None, help="Interface to bind (default KFHIR_HOST or 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default KFHIR_PORT or 8080).")
@click.option("--production", is_flag=True,
              help="gunicorn with KFHIR_WORKERS workers of KFHIR_THREADS threads, KFHIR_REQUEST_TIMEOUT, graceful stop "
                   "on SIGTERM.")
def serve(host: str | None, port: int | None, production: bool) -> None:
    """Serve the API on HOST:PORT (the development server, or gunicorn with --production)."""
    from werkzeug.serving import run_simple

    from service import create_app

    settings = context.settings()
    settings = settings.replace(host=host or settings.host, port=port or settings.port)
    if production:
        from service.web.serving import serve as serve_production

        click.echo(f"Ketamine FHIR Bridge (gunicorn, {settings.workers} workers × {settings.threads} threads) on "
                   f"{settings.host}:{settings.port}")
        serve_production(settings)
        return
    app = create_app(settings)
    base = f"http://{settings.host}:{settings.port}"
    click.echo(f"Ketamine FHIR Bridge on {base}")
    click.echo(f"  health:     {base}/health")
    click.echo(f"  domain API: {base}/api/v1/treatment-plans (also administrations, adverse-events, assessments)")
    click.echo(f"  FHIR R4:    {base}/fhir/metadata")
    # SIGTERM as an orderly exit, so exit handlers run (the audit writes the bursts of refusals it holds)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(settings.host, settings.port, app, threaded=True)
