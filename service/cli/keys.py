"""`ketamine-fhir keys generate`: keys for SMART Backend Services authentication to EHRs."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def keys() -> None:
    """Keys for SMART Backend Services authentication to EHRs."""


@keys.command("generate")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the private key (PEM); refused if the file exists.")
@click.option("--algorithm", type=click.Choice(["RS384", "ES384"]), default="RS384", show_default=True)
def keys_generate(out: Path, algorithm: str) -> None:
    """Write a new private key and print the public JWKS to register with the EHR."""
    from service.exchange.auth import generate_key

    if out.exists():
        raise click.UsageError(f"{out} exists; choose another path (keys are never overwritten)")
    pem, public = generate_key(algorithm)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600)
    out.write_bytes(pem)
    click.echo(f"wrote the private key to {out} (keep it secret); register this public JWKS with the EHR:",
               err=True)
    click.echo(json.dumps(public, indent=2))
