"""Bounded reads as the trail grows: the break-glass rule's peers (accessors' newest hour, break-glass hours
indexed) and the audit search's unfiltered totals (events per organisation and kind).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oversight_accessor",
        sa.Column("org", sa.String(), nullable=False),
        sa.Column("accessor_id", sa.String(), nullable=False),
        sa.Column("org_type", sa.String(), nullable=False),
        sa.Column("last_hour", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org", "accessor_id"),
    )
    op.create_index("oversight_accessor_active", "oversight_accessor", ["org_type", "last_hour"])
    op.create_index("oversight_access_break_glass", "oversight_access", ["hour"],
                    postgresql_where=sa.text("break_glass > 0"), sqlite_where=sa.text("break_glass > 0"))
    op.create_table(
        "oversight_event_count",
        sa.Column("accessor_org", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("n", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("accessor_org", "kind"),
    )
    op.execute("INSERT INTO oversight_event_count (accessor_org, kind, n) "
               "SELECT accessor_org, kind, count(*) FROM oversight_event GROUP BY accessor_org, kind")
    # Accessors seen before this revision: their newest hour from the counters.
    op.execute("INSERT INTO oversight_accessor (org, accessor_id, org_type, last_hour) "
               "SELECT org, accessor_id, max(org_type), max(hour) FROM oversight_access GROUP BY org, accessor_id")


def downgrade() -> None:
    op.drop_table("oversight_event_count")
    op.drop_index("oversight_access_break_glass", table_name="oversight_access")
    op.drop_index("oversight_accessor_active", table_name="oversight_accessor")
    op.drop_table("oversight_accessor")
