"""Esketamine frequency counted from the sessions stored for the same plan (clinical.md §2 TRD schedule), through
the real store: the session over the week's limit is stored and flagged, never refused."""
from __future__ import annotations

from domain.test_clinical_scenarios import FREQUENCY, PLAN, SESSION, STORED_PLAN, esketamine_on

from service.app.runtime import Runtime


def flags(runtime: Runtime, record_id: str) -> set[tuple[str, str]]:
    record = runtime.store.get(SESSION, record_id)
    assert record is not None
    return {(w["code"], w["severity"]) for w in record.warnings if w.get("code")}


def test_a_third_session_in_week_one_is_stored_and_flagged(runtime: Runtime) -> None:
    runtime.intake.submit(PLAN, STORED_PLAN)
    runtime.intake.submit(SESSION, esketamine_on("2026-03-02", "esk-a"))
    second = runtime.intake.submit(SESSION, esketamine_on("2026-03-05", "esk-b")).record
    third = runtime.intake.submit(SESSION, esketamine_on("2026-03-06", "esk-c")).record
    assert FREQUENCY not in flags(runtime, second.id)
    assert FREQUENCY in flags(runtime, third.id)
    # a session of another plan, or another patient, in the same week does not count
    other = esketamine_on("2026-03-06", "esk-d", plan_external_id="plan-2")
    assert FREQUENCY not in flags(runtime, runtime.intake.submit(SESSION, other).record.id)
    # sent again unchanged in substance, the third session is still the third (its stored self is not counted)
    again = runtime.intake.replace(SESSION, third.id, 1, esketamine_on("2026-03-06", "esk-c", lot_number="L7"))
    assert FREQUENCY in flags(runtime, again.record.id)
