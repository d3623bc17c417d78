"""The disclosure ledger, the answer cache and privacy budgets of population analytics (docs/architecture.md §16).

- ``records_sdc_released``: every set of people an analytic answer released
  (sealed keyed pseudonyms, with the query digest, cell and released count),
  so that disclosure control remembers, across restarts and processes, what a
  later answer must not differ from by a few people.
- ``records_analytics_answer``: the bytes released for a question on a store
  version, so that any process gives the same question the same answer.
- ``records_dp_spend`` and ``records_project.privacy``: a project's
  differential-privacy terms and what its answers spent of its budget.

Revision ID: 0006_analytics_ledger
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006_analytics_ledger"
down_revision = "0005"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "records_sdc_released",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("digest", _str(), nullable=False),
        sa.Column("members", sa.LargeBinary(), nullable=False),
        sa.Column("query_digest", _str(), nullable=False),
        sa.Column("cell", _str(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("released_at", _ts, nullable=False),
    )
    op.create_index("ix_records_sdc_released_size", "records_sdc_released", ["size"])
    op.create_index("ix_records_sdc_released_digest", "records_sdc_released", ["digest"], unique=True)
    op.create_table(
        "records_analytics_answer",
        sa.Column("key", _str(), primary_key=True),
        sa.Column("version", _str(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("released_at", _ts, nullable=False),
    )
    op.create_index("ix_records_analytics_answer_released_at", "records_analytics_answer", ["released_at"])
    op.create_table(
        "records_dp_spend",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project", _str(), nullable=False),
        sa.Column("query_digest", _str(), nullable=False),
        sa.Column("epsilon", sa.Integer(), nullable=False),
        sa.Column("spent_at", _ts, nullable=False),
    )
    op.create_index("ix_records_dp_spend_project", "records_dp_spend", ["project"])
    with op.batch_alter_table("records_project") as batch:
        batch.add_column(sa.Column("privacy", _str(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("records_project") as batch:
        batch.drop_column("privacy")
    op.drop_table("records_dp_spend")
    op.drop_table("records_analytics_answer")
    op.drop_table("records_sdc_released")
