"""The console's pages: overview, mappings, profiles (with examples and the IG package), clinical rules, try it."""
from __future__ import annotations

import logging
from typing import Any

from flask import Response, abort, render_template, request

from service.admin import mappings, profiles, trial
from service.admin.dashboard import dashboard
from service.admin.jsonview import annotate
from service.admin.overview import overview as counts
from service.domain.kinds import KINDS
from service.web import current
from service.web.admin import bp

log = logging.getLogger(__name__)


@bp.get("/")
def overview() -> str:
    runtime = current.runtime()
    board = dashboard(runtime.engine, runtime.endpoints.all())
    return render_template("admin/overview.html", counts=counts(runtime.engine), specs=mappings.specs(),
                           profiles=profiles.structure_definitions(), board=board)


@bp.get("/mappings")
def mapping_list() -> str:
    return render_template("admin/mappings.html", specs=mappings.specs())


@bp.get("/mappings/<kind>")
def mapping(kind: str) -> str:
    spec = mappings.spec(kind)
    if spec is None:
        abort(404, f"There is no mapping for a record kind {kind!r}.")
    return render_template("admin/mapping.html", spec=spec, groups=mappings.groups(spec),
                           example=mappings.example(kind))


@bp.get("/profiles")
def profile_list() -> str:
    return render_template("admin/profiles.html", profiles=profiles.structure_definitions())


@bp.get("/profiles/<sd_id>")
def profile(sd_id: str) -> str:
    sd = profiles.structure_definition(sd_id)
    if sd is None:
        abort(404, f"There is no profile or extension {sd_id!r} in our implementation guide.")
    return render_template("admin/profile.html", sd=sd, elements=profiles.elements(sd),
                           invariants=profiles.invariants(sd), examples=profiles.examples_of(sd))


@bp.get("/examples/<path:file>")
def example(file: str) -> str:
    entry = profiles.example_entry(file)
    if entry is None:
        abort(404, f"There is no example {file!r} in the implementation guide's manifest.")
    doc = profiles.example_document(entry)
    result = profiles.validate_example(entry, doc)
    return render_template("admin/example.html", entry=entry, doc=doc, result=result,
                           view=annotate(doc, result.findings))


@bp.get("/profiles/package.tgz")
def ig_package() -> Response:
    name, data = profiles.ig_package()
    return Response(data, mimetype="application/gzip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/rules")
def rules() -> str:
    """The clinical rules as they run: each finding rule and each plausibility limit, with its source."""
    from service.domain import plausibility
    from service.domain.findings import CATALOGUE, SEVERITIES

    found = sorted(CATALOGUE.values(), key=lambda r: (SEVERITIES.index(r.severity), r.code, r.name))
    return render_template("admin/rules.html", rules=found, limits=plausibility.VITAL_LIMITS,
                           weight=plausibility.WEIGHT_KG, doc=plausibility.__doc__ or "")


@bp.route("/try", methods=["GET", "POST"])
def try_it() -> Any:
    choice = request.form.get("kind", trial.AUTO)
    text = request.form.get("document", "")
    if request.method == "GET":
        return render_template("admin/try.html", choices=_choices(), choice=choice, text=text, result=None,
                               error=None)
    upload = request.files.get("file")
    raw = upload.read() if upload and upload.filename else text.encode("utf-8")
    if upload and upload.filename:
        text = raw.decode("utf-8", errors="replace")
    result, error = None, None
    try:
        result = trial.run(raw, choice)
    except trial.TrialError as exc:
        error = str(exc)
    except Exception:  # noqa: BLE001 - an admin's input must never give a 500; the bug is logged
        log.exception("try it failed on a %s document", choice)
        error = "This document could not be checked: the service failed on it (the failure has been logged)."
    status = 200 if result is not None else 422
    return render_template("admin/try.html", choices=_choices(), choice=choice, text=text, result=result,
                           error=error), status


def _choices() -> list[tuple[str, str]]:
    labels = {trial.AUTO: "Detect (FHIR if it has a resourceType)", trial.FHIR: "FHIR resource or Bundle"}
    return [(c, labels.get(c, f"{c} record")) for c in trial.CHOICES if c in labels or c in KINDS]
