"""Complaints: a patient's report of one access, and the regulator's answer (sealed text).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oversight_complaint",
        sa.Column("complaint_id", sa.String(), primary_key=True),
        sa.Column("patient", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("hospital", sa.String(), nullable=False),
        sa.Column("event_kind", sa.String(), nullable=False),
        sa.Column("reason", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(), server_default="open", nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("filed_event_id", sa.String(), nullable=False),
        sa.Column("answer", sa.LargeBinary(), nullable=True),
        sa.Column("answerer", sa.String(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_event_id", sa.String(), nullable=True),
    )
    op.create_index("oversight_complaint_patient", "oversight_complaint", ["patient", "filed_at"])
    op.create_index("oversight_complaint_state", "oversight_complaint", ["state", "filed_at"])


def downgrade() -> None:
    op.drop_index("oversight_complaint_state", table_name="oversight_complaint")
    op.drop_index("oversight_complaint_patient", table_name="oversight_complaint")
    op.drop_table("oversight_complaint")
