"""`ketamine-fhir profiles build | check | package`: the implementation guide in profiles/."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


@click.group()
def profiles() -> None:
    """The implementation guide in profiles/: snapshots and the FHIR NPM package."""


def _profiles_option(f: Any) -> Any:
    return click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="The profiles folder (default: the one the service ships).")(f)


@profiles.command("build")
@_profiles_option
def profiles_build(folder: Path | None) -> None:
    """Regenerate every snapshot (and the ImplementationGuide) from the differentials."""
    from service.conformance.ig import build
    from service.conformance.snapshot import SnapshotError
    from service.resources import profiles_dir

    try:
        written = build(folder or profiles_dir())
    except SnapshotError as exc:
        raise click.ClickException(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"{len(written)} files changed")


@profiles.command("check")
@_profiles_option
def profiles_check(folder: Path | None) -> None:
    """Exit 1 if any generated file (snapshot, ImplementationGuide) is stale."""
    from service.conformance.ig import stale
    from service.resources import profiles_dir

    outdated = stale(folder or profiles_dir())
    for path in outdated:
        click.echo(f"stale: {path} (run `ketamine-fhir profiles build`)")
    sys.exit(1 if outdated else 0)


@profiles.command("package")
@_profiles_option
@click.option("--dist", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"), show_default=True)
def profiles_package(folder: Path | None, dist: Path) -> None:
    """Write dist/<name>-<version>.tgz, the IG as a FHIR NPM package."""
    from service.conformance.ig import pack
    from service.resources import profiles_dir

    click.echo(str(pack(folder or profiles_dir(), dist)))
