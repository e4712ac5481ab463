"""The console's mapping history: every known version of a kind's mapping and a rule diff between two."""
from __future__ import annotations

from flask import abort, render_template, request

from service.admin import history, mappings
from service.web import current
from service.web.admin import bp


@bp.get("/mappings/<kind>/history")
def mapping_history(kind: str) -> tuple[str, int]:
    if mappings.spec(kind) is None:
        abort(404, f"There is no mapping for a record kind {kind!r}.")
    engine = current.runtime().engine
    history.record_current(engine)  # a process that started before the database was migrated records now
    found = history.versions(engine, kind)
    old_id, new_id = request.args.get("from", ""), request.args.get("to", "")
    if not old_id and not new_id and len(found) > 1:
        old_id, new_id = found[1].short, found[0].short  # the latest change, by default
    old = new = None
    changes, error, status = None, None, 200
    if bool(old_id) != bool(new_id):
        error, status = "Choose two versions to compare: one to compare from and one to compare to.", 400
    elif old_id:
        try:
            old, new = history.find(found, old_id), history.find(found, new_id)
            changes = history.compare(old, new)
        except history.HistoryError as exc:
            error, status = str(exc), 400 if not isinstance(exc, history.UnknownVersion) else 404
    return render_template("admin/mapping_history.html", kind=kind, versions=found, old=old, new=new,
                           changes=changes, error=error, old_id=old_id, new_id=new_id), status
