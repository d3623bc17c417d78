"""Care relationships expire; patients get notices.

- ``records_care_link.expires_at``: a care relationship lasts as long as its
  evidence (a current Encounter or EpisodeOfCare, a referral, the patient's
  grant). Links made before this revision came from authorship alone, which
  is no evidence: they are left without an expiry, so they count for nothing.
- ``records_notice``: the outbox of messages owed to patients (a hospital's
  first care relationship, break-glass, access by the state, acts on their
  behalf), read by the portal.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("records_care_link") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "records_notice",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("patient", _str(), nullable=False),
        sa.Column("kind", _str(), nullable=False),
        sa.Column("org", _str(), nullable=False),
        sa.Column("org_type", _str(), nullable=False),
        sa.Column("about_org", _str(), nullable=True),
        sa.Column("purpose", _str(), nullable=True),
        sa.Column("event_id", _str(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("visible_from", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_records_notice_patient", "records_notice", ["patient"])


def downgrade() -> None:
    op.drop_index("ix_records_notice_patient", "records_notice")
    op.drop_table("records_notice")
    with op.batch_alter_table("records_care_link") as batch:
        batch.drop_column("expires_at")
