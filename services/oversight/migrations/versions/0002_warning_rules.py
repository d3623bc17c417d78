"""Validity warnings per hospital, day and rule (oversight_warning).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("oversight_warning",
        sa.Column("hospital", sa.String(), nullable=False),
        sa.Column("day", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("n", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("hospital", "day", "rule")
    )


def downgrade() -> None:
    op.drop_table("oversight_warning")
