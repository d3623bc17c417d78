"""Element terms of data-use agreements; ``_elements`` and ``_typeFilter`` of export jobs.

- ``records_project.elements``: per resource type, the root elements the
  agreement allows (JSON; ``{}``: every element de-identification leaves).
- ``records_export_job.elements`` / ``type_filters``: the kick-off's
  ``_elements`` and ``_typeFilter`` per type, kept with the job so that a
  resumed job applies them exactly as asked.

Revision ID: 0007_export_elements_filters
Revises: 0006_analytics_ledger
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007_export_elements_filters"
down_revision = "0006_analytics_ledger"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("records_project") as batch:
        batch.add_column(sa.Column("elements", _str(), nullable=False, server_default="{}"))
    with op.batch_alter_table("records_export_job") as batch:
        batch.add_column(sa.Column("elements", _str(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("type_filters", _str(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("records_export_job") as batch:
        batch.drop_column("type_filters")
        batch.drop_column("elements")
    with op.batch_alter_table("records_project") as batch:
        batch.drop_column("elements")
