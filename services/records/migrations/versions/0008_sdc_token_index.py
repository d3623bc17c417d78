"""The disclosure ledger's token index (docs/architecture.md §16, ``ledger.py``).

``records_sdc_token``: for each released set, the keyed hashes of its first
members by that hash; a new answer reads only the released sets sharing a
token with its own cells, instead of every set of nearby size. Sets released
before this revision get their tokens from the first records process that
releases an answer after it (it alone holds the key that opens them).

Revision ID: 0008_sdc_token_index
Revises: 0007_export_elements_filters
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008_sdc_token_index"
down_revision = "0007_export_elements_filters"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "records_sdc_token",
        sa.Column("token", _str(), primary_key=True),
        sa.Column("set_pk", sa.Integer(), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("records_sdc_token")
