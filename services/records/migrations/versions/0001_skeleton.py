"""Baseline: the walking skeleton's records schema.

Encrypted resource versions, wrapped per-patient data keys, care links derived
from authorship, and the identifier blind index.

Revision ID: 0001
Revises:
Create Date: 2026-05-09
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "records_patient_key",
        sa.Column("patient", _str(), primary_key=True),
        sa.Column("kek_id", _str(), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "records_resource",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("patient", _str(), nullable=False),
        sa.Column("rtype", _str(), nullable=False),
        sa.Column("rid_index", _str(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hospital", _str(), nullable=False),
        sa.Column("content_index", _str(), nullable=False),
        sa.Column("submission_id", _str(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("rid_index", "version"),
    )
    for column in ("patient", "rtype", "rid_index", "hospital"):
        op.create_index(f"ix_records_resource_{column}", "records_resource", [column])
    op.create_table(
        "records_care_link",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("patient", _str(), nullable=False),
        sa.Column("hospital", _str(), nullable=False),
        sa.Column("source", _str(), nullable=False),
        sa.UniqueConstraint("patient", "hospital"),
    )
    op.create_index("ix_records_care_link_patient", "records_care_link", ["patient"])
    op.create_table(
        "records_identifier_index",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("identifier_index", _str(), nullable=False),
        sa.Column("patient", _str(), nullable=False),
        sa.UniqueConstraint("identifier_index", "patient"),
    )
    op.create_index("ix_records_identifier_index_identifier_index", "records_identifier_index",
                    ["identifier_index"])


def downgrade() -> None:
    op.drop_table("records_identifier_index")
    op.drop_table("records_care_link")
    op.drop_table("records_resource")
    op.drop_table("records_patient_key")
