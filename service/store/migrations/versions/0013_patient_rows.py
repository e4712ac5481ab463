"""A resource's `patient` search rows go: the parameter is answered from its `subject` rows that name a Patient
(search/parameters.SUBJECT_PATIENT), which held the same values. DetectedIssue's and Provenance's `patient` read
other elements and keep their rows.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

#: the types whose `patient` is their `subject` (a migration keeps its own copy: the parameters move on)
TYPES = ("Encounter", "Condition", "CarePlan", "Goal", "MedicationRequest", "MedicationAdministration",
         "MedicationStatement", "Procedure", "Observation")
WHERE = "resource_type IN ({})".format(", ".join(f"'{t}'" for t in TYPES))


def upgrade() -> None:
    op.execute(sa.text(f"DELETE FROM fhir_search_index WHERE param = 'patient' AND {WHERE}"))  # noqa: S608 - constants


def downgrade() -> None:
    # as they were written: a copy of every subject row (its Group subjects too)
    # constants of this file only
    copy = ("INSERT INTO fhir_search_index (resource_pk, resource_type, param, system, value, low, high) "  # noqa: S608
            "SELECT resource_pk, resource_type, 'patient', system, value, low, high FROM fhir_search_index "
            f"WHERE param = 'subject' AND {WHERE}")
    op.execute(sa.text(copy))
