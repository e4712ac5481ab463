"""Command line `ketamine-fhir`: the root group; each command group lives in a module of its own.

    serve | db upgrade | seed-demo | import | validate | profiles | mappings | map
    worker | push | pull | sandbox-check | endpoints | keys | admin | clients

Exit 0 ok, 1 negative result, 2 usage. Every command reaches the settings and the runtime
through `service.cli.context`.
"""
from __future__ import annotations

import click

from service.cli import admin, clients, db, endpoints, exchange, keys, mappings, profiles, records, serve, validate


@click.group()
def cli() -> None:
    """Ketamine FHIR Bridge: ketamine therapy records to FHIR R4 and back."""


for _command in (serve.serve, db.db, records.seed_demo, records.import_, validate.validate_command,
                 profiles.profiles, mappings.mappings, mappings.map_command, exchange.sandbox_check,
                 exchange.worker, exchange.push, exchange.pull, endpoints.endpoints, keys.keys, admin.admin,
                 clients.clients):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="ketamine-fhir")
