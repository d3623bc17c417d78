"""Consent registry and referrals.

- ``records_consent``: encrypted, append-only consent versions, one row per
  ``consent.changes.v1`` message (``change_id`` unique: redelivery is a no-op).
- ``records_care_link`` learns where a referral came from and when.
- ``records_patient_key.kek_id`` is indexed: key rotation finds the data keys
  still wrapped by a retiring KEK.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-09
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "records_consent",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("patient", _str(), nullable=False),
        sa.Column("consent_index", _str(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("change_id", _str(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("consent_index", "version"),
        sa.UniqueConstraint("change_id"),
    )
    op.create_index("ix_records_consent_patient", "records_consent", ["patient"])
    op.create_index("ix_records_consent_consent_index", "records_consent", ["consent_index"])
    with op.batch_alter_table("records_care_link") as batch:
        batch.add_column(sa.Column("referred_by", _str(), nullable=True))
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_records_patient_key_kek_id", "records_patient_key", ["kek_id"])


def downgrade() -> None:
    op.drop_index("ix_records_patient_key_kek_id", "records_patient_key")
    with op.batch_alter_table("records_care_link") as batch:
        batch.drop_column("created_at")
        batch.drop_column("referred_by")
    op.drop_index("ix_records_consent_consent_index", "records_consent")
    op.drop_index("ix_records_consent_patient", "records_consent")
    op.drop_table("records_consent")
