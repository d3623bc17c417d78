"""The oversight service's tables: metrics kept up to date by its consumers (docs/architecture.md §14).

Everything here is a projection of two topics, never a scan of the log at
read time: quality reports (``ingest.quality.v1``) folded into counters per
hospital, day and resource type; audit events (``audit.events.v1``) kept as
an indexed row each (the searchable trail), folded into counters per
accessor and hour, and the care relationships, break-glass reviews and
anomaly flags derived from them. Counters are additive, so a batch is one
``INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n`` per key, on
PostgreSQL and SQLite alike.

The schema is owned by Alembic (``services/oversight/migrations``), like the
records service's.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.engine import Engine

from services.adapters.sql import engine_for

metadata = MetaData()

# Lag bucket columns, one per upper bound of ``contracts.events.LAG_BUCKETS_H`` and the open one.
LAG_COLUMNS = ("lag_1", "lag_6", "lag_24", "lag_72", "lag_168", "lag_720", "lag_8760", "lag_inf")
QUALITY_COUNTERS = ("resources", "accepted", "rejected", "warnings", "fields_present", "fields_expected",
                    "codings", "recognised", "defaults", "duplicates", "lag_unknown", *LAG_COLUMNS)
ACCESS_COUNTERS = ("reads", "denials", "break_glass")


def _counters(names: tuple[str, ...]) -> list[Column]:  # type: ignore[type-arg]
    return [Column(n, BigInteger, nullable=False, server_default="0") for n in names]


report = Table(
    "oversight_report", metadata,
    Column("report_id", String, primary_key=True),
    Column("hospital", String, nullable=False),
    Column("submission_id", String, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("outcome", String, nullable=False),
    Column("resources", BigInteger, nullable=False),
    Column("rejected", BigInteger, nullable=False),
    Index("oversight_report_hospital_time", "hospital", "received_at"),
)

quality = Table(
    "oversight_quality", metadata,
    Column("hospital", String, primary_key=True),
    Column("day", String, primary_key=True),  # YYYY-MM-DD (UTC) of arrival
    Column("rtype", String, primary_key=True),
    *_counters(QUALITY_COUNTERS),
)

reason = Table(
    "oversight_reason", metadata,
    Column("hospital", String, primary_key=True),
    Column("day", String, primary_key=True),
    Column("reason", String, primary_key=True),
    Column("n", BigInteger, nullable=False, server_default="0"),
)

# Validity warnings of accepted resources per rule (``per-1``, ``binding-extensible``, ``code-system``, …): which of
# the specification's rules a hospital's data breaks most, per day.
warning = Table(
    "oversight_warning", metadata,
    Column("hospital", String, primary_key=True),
    Column("day", String, primary_key=True),
    Column("rule", String, primary_key=True),
    Column("n", BigInteger, nullable=False, server_default="0"),
)

event = Table(
    "oversight_event", metadata,
    Column("event_id", String, primary_key=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("kind", String, nullable=False),
    Column("accessor_id", String, nullable=False),
    Column("accessor_org", String, nullable=False),
    Column("org_type", String, nullable=False),
    Column("role", String, nullable=False),
    Column("purpose", String, nullable=True),
    Column("patient", String, nullable=True),
    Column("allowed", Boolean, nullable=True),
    Column("resources", Integer, nullable=False),
    Column("record", String, nullable=True),  # the first resource named ("Type/id"): repeated reads
    Column("body", Text, nullable=False),  # the event's canonical JSON, as the log holds it
    Index("oversight_event_time", "occurred_at", "event_id"),
    Index("oversight_event_org_time", "accessor_org", "occurred_at"),
    Index("oversight_event_accessor_time", "accessor_id", "occurred_at"),
    Index("oversight_event_patient_time", "patient", "occurred_at"),
)

access = Table(
    "oversight_access", metadata,
    Column("org", String, primary_key=True),
    Column("accessor_id", String, primary_key=True),
    Column("hour", DateTime(timezone=True), primary_key=True),
    Column("org_type", String, nullable=False),
    *_counters(ACCESS_COUNTERS),
    # The hours with a break-glass only: the peer rule sums these each batch, never the month of reads.
    Index("oversight_access_break_glass", "hour", postgresql_where=text("break_glass > 0"),
          sqlite_where=text("break_glass > 0")),
)

# How many events of each kind each organisation's accessors caused: the audit search's total when it is
# filtered by nothing but hospital and kind (its landing page), without counting a million rows per view.
event_count = Table(
    "oversight_event_count", metadata,
    Column("accessor_org", String, primary_key=True),
    Column("kind", String, primary_key=True),
    Column("n", BigInteger, nullable=False, server_default="0"),
)

# Every accessor ever seen and their newest active hour: the break-glass rule's peers (who read in the period).
accessor = Table(
    "oversight_accessor", metadata,
    Column("org", String, primary_key=True),
    Column("accessor_id", String, primary_key=True),
    Column("org_type", String, nullable=False),
    Column("last_hour", DateTime(timezone=True), nullable=False),
    Index("oversight_accessor_active", "org_type", "last_hour"),
)

care = Table(
    "oversight_care", metadata,
    Column("org", String, primary_key=True),
    Column("patient", String, primary_key=True),
    Column("since", DateTime(timezone=True), nullable=False),
)

flag = Table(
    "oversight_flag", metadata,
    Column("flag_id", String, primary_key=True),  # rule|org|accessor|window: the same finding is one flag
    Column("rule", String, nullable=False),
    Column("hospital", String, nullable=False),
    Column("accessor_id", String, nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("evidence", Text, nullable=False),  # JSON
    Column("event_ids", Text, nullable=False),  # JSON list
    Index("oversight_flag_time", "raised_at"),
)

review = Table(
    "oversight_review", metadata,
    Column("event_id", String, primary_key=True),  # the break-glass event under review
    Column("hospital", String, nullable=False),
    Column("accessor_id", String, nullable=False),
    Column("patient", String, nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=True),  # the break-glass reason the clinician gave
    Column("state", String, nullable=False, server_default="open"),  # open, justified, not_justified
    Column("note", Text, nullable=True),
    Column("reviewer", String, nullable=True),
    Column("reviewed_at", DateTime(timezone=True), nullable=True),
    Column("review_event_id", String, nullable=True),
    Index("oversight_review_state_due", "state", "due_at"),
    Index("oversight_review_hospital", "hospital", "state"),
)

complaint = Table(
    "oversight_complaint", metadata,
    Column("complaint_id", String, primary_key=True),
    Column("patient", String, nullable=False),  # pseudonym
    Column("event_id", String, nullable=False),  # the access complained about
    Column("hospital", String, nullable=False),  # its accessor's organisation
    Column("event_kind", String, nullable=False),
    Column("reason", LargeBinary, nullable=False),  # the patient's words, sealed (complaints.py)
    Column("state", String, nullable=False, server_default="open"),  # open, answered
    Column("filed_at", DateTime(timezone=True), nullable=False),
    Column("filed_event_id", String, nullable=False),
    Column("answer", LargeBinary, nullable=True),  # the regulator's words, sealed
    Column("answerer", String, nullable=True),
    Column("answered_at", DateTime(timezone=True), nullable=True),
    Column("answered_event_id", String, nullable=True),
    Index("oversight_complaint_patient", "patient", "filed_at"),
    Index("oversight_complaint_state", "state", "filed_at"),
)

TABLE_NAMES = frozenset(metadata.tables)


def make_engine(url: str, migrate: bool = True) -> Engine:
    """An engine for ``url`` whose oversight schema is at the newest Alembic revision."""
    engine = engine_for(url, pool_size=10, application_name="healthgov-oversight")
    if migrate:
        from services.oversight.migrations import upgrade

        upgrade(engine)
    return engine
