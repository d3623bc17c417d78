"""Data-use projects and Bulk Data export jobs.

- ``records_project``: a research organisation's project, its terms and its
  signed ethics approval; the regulator's review changes ``status``.
- ``records_export_job`` / ``records_export_part``: durable export jobs and
  their NDJSON output, stored only as ciphertext under the job's key.
- ``records_notice.project``: the project a notice about research use names.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("records_notice") as batch:
        batch.add_column(sa.Column("project", _str(), nullable=True))
    op.create_table(
        "records_project",
        sa.Column("id", _str(), primary_key=True),
        sa.Column("org", _str(), nullable=False),
        sa.Column("title", _str(), nullable=False),
        sa.Column("description", _str(), nullable=False),
        sa.Column("purpose", _str(), nullable=False),
        sa.Column("status", _str(), nullable=False),
        sa.Column("types", _str(), nullable=False),
        sa.Column("deidentify", _str(), nullable=False),
        sa.Column("cohort", _str(), nullable=False),
        sa.Column("expires_at", _ts, nullable=False),
        sa.Column("approval", _str(), nullable=False),
        sa.Column("approval_id", _str(), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
    )
    op.create_index("ix_records_project_org", "records_project", ["org"])
    op.create_table(
        "records_export_job",
        sa.Column("id", _str(), primary_key=True),
        sa.Column("project", _str(), nullable=False),
        sa.Column("org", _str(), nullable=False),
        sa.Column("caller", _str(), nullable=False),
        sa.Column("role", _str(), nullable=False),
        sa.Column("status", _str(), nullable=False),
        sa.Column("request", _str(), nullable=False),
        sa.Column("types", _str(), nullable=False),
        sa.Column("since", _ts, nullable=True),
        sa.Column("kek_id", _str(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("cursor", _str(), nullable=True),
        sa.Column("patients_done", sa.Integer(), nullable=False),
        sa.Column("patients_total", sa.Integer(), nullable=False),
        sa.Column("excluded", _str(), nullable=False),
        sa.Column("withheld", _str(), nullable=False),
        sa.Column("event_id", _str(), nullable=True),
        sa.Column("transaction_time", _ts, nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("expires_at", _ts, nullable=True),
    )
    op.create_index("ix_records_export_job_project", "records_export_job", ["project"])
    op.create_table(
        "records_export_part",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job", _str(), nullable=False),
        sa.Column("rtype", _str(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("digest", _str(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_records_export_part_job", "records_export_part", ["job"])


def downgrade() -> None:
    op.drop_index("ix_records_export_part_job", "records_export_part")
    op.drop_table("records_export_part")
    op.drop_index("ix_records_export_job_project", "records_export_job")
    op.drop_table("records_export_job")
    op.drop_index("ix_records_project_org", "records_project")
    op.drop_table("records_project")
    with op.batch_alter_table("records_notice") as batch:
        batch.drop_column("project")
