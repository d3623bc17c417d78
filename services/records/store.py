"""Records storage: encrypted rows, wrapped data keys, care links, consents (SQLModel).

No column holds plaintext PHI. A row is addressed by the patient pseudonym and
a blind index of ``type/id``; the resource, its labels and its id live only
inside the AES-GCM ciphertext, bound by AAD to the row. Consents follow the
same rule: who was granted what lives inside the ciphertext, the row only says
whose consent it is (a pseudonym) and which version.

The schema is owned by Alembic (``services/records/migrations``);
``make_engine`` brings a database to the newest revision before use, on SQLite
and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from operator import attrgetter
from typing import Protocol, TypeVar

from sqlalchemy import Column, LargeBinary, UniqueConstraint, bindparam, exists
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from services.adapters.sql import engine_for


def _now() -> datetime:
    return datetime.now(UTC)


class PatientKey(SQLModel, table=True):
    """A patient's data key, wrapped by a KEK. Shredding deletes ``wrapped``."""

    __tablename__ = "records_patient_key"
    patient: str = Field(primary_key=True)  # pseudonym
    kek_id: str = Field(index=True)
    wrapped: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = Field(default_factory=_now)
    shredded_at: datetime | None = None


class Record(SQLModel, table=True):
    """One version of one resource, encrypted."""

    __tablename__ = "records_resource"
    __table_args__ = (UniqueConstraint("rid_index", "version"),)
    pk: int | None = Field(default=None, primary_key=True)
    patient: str = Field(index=True)  # pseudonym, or "directory"
    rtype: str = Field(index=True)
    rid_index: str  # blind index of "type/id"; looked up through the unique (rid_index, version) index
    version: int
    hospital: str
    content_index: str  # keyed digest of the content: identical redelivery is a no-op
    submission_id: str
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=_now)


class CareLink(SQLModel, table=True):
    """A hospital in a care relationship with a patient, until ``expires_at``.

    ``source`` names the evidence the platform can account for (docs/architecture.md §10):
    ``encounter`` (a current or recently ended Encounter or EpisodeOfCare the
    hospital sent for the patient), ``referral`` (``referred_by``, a hospital in
    care, referred the patient to it) or ``patient_grant`` (the patient's own
    grant in the portal). Sending any other record grants nothing. A link
    whose ``expires_at`` has passed (or is unset) counts for nothing; new
    evidence extends it.
    """

    __tablename__ = "records_care_link"
    __table_args__ = (UniqueConstraint("patient", "hospital"),)
    pk: int | None = Field(default=None, primary_key=True)
    patient: str = Field(index=True)
    hospital: str
    source: str = "encounter"
    referred_by: str | None = None
    created_at: datetime | None = Field(default_factory=_now)
    expires_at: datetime | None = None


class Notice(SQLModel, table=True):
    """A message owed to a patient: the outbox the portal reads (and e-mail or SMS delivery, later).

    Written with the act it reports, from its audit event: a hospital's first
    care relationship, break-glass, access by the state, a consent or referral
    made on the patient's behalf. No PHI: the patient's pseudonym, who, why,
    when, and the audit event a patient can verify. ``visible_from`` delays a
    notice a warrant may defer (the policy's ``notify_after``).
    """

    __tablename__ = "records_notice"
    pk: int | None = Field(default=None, primary_key=True)
    patient: str = Field(index=True)  # pseudonym
    kind: str  # first_access | break_glass | state_access | on_behalf
    org: str
    org_type: str
    about_org: str | None = None  # the hospital a referral on the patient's behalf was made to
    project: str | None = None  # the data-use project a research export included the patient in
    purpose: str | None = None
    event_id: str = Field(unique=True)
    created_at: datetime = Field(default_factory=_now)
    visible_from: datetime = Field(default_factory=_now)


class IdentifierIndex(SQLModel, table=True):
    """Blind index of a patient identifier (e.g. an MRN) → patient pseudonym."""

    __tablename__ = "records_identifier_index"
    __table_args__ = (UniqueConstraint("identifier_index", "patient"),)
    pk: int | None = Field(default=None, primary_key=True)
    identifier_index: str = Field(index=True)
    patient: str


class ConsentRow(SQLModel, table=True):
    """One version of one patient consent (a FHIR Consent), encrypted.

    Rows are only ever added: a revocation is a new version whose status is
    ``inactive``. ``change_id`` is the ``consent.changes.v1`` message that made
    the version, so applying a redelivered change is a no-op.
    """

    __tablename__ = "records_consent"
    __table_args__ = (UniqueConstraint("consent_index", "version"),)
    pk: int | None = Field(default=None, primary_key=True)
    patient: str = Field(index=True)  # pseudonym
    consent_index: str = Field(index=True)  # blind index of the consent id
    version: int
    change_id: str = Field(unique=True)
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=_now)


RECORDS_TABLES = (PatientKey, Record, CareLink, IdentifierIndex, ConsentRow, Notice)
RECORDS_TABLE_NAMES = frozenset(t.__tablename__ for t in RECORDS_TABLES)
R = TypeVar("R")
_RID = attrgetter("rid_index")
_VERSION = attrgetter("version")


class Project(SQLModel, table=True):
    """A data-use project: a research organisation's governed licence to export de-identified data.

    Its terms (types, de-identification level, cohort criteria, expiry) are
    what the policy holds each export to; ``approval`` is the signed ethics
    approval as the board issued it, verified again at every export so that
    its own expiry and the board's standing count. No PHI.
    """

    __tablename__ = "records_project"
    id: str = Field(primary_key=True)
    org: str = Field(index=True)
    title: str
    description: str  # the study's stated purpose, in the applicant's words
    purpose: str = "HRESCH"
    status: str = "applied"  # applied | approved | suspended | revoked
    types: str  # JSON list of resource types the agreement covers
    deidentify: str  # pseudonymize | safe_harbor
    cohort: str = "{}"  # JSON cohort criteria
    privacy: str | None = None  # JSON differential-privacy terms of its analytic answers (None: none asked)
    elements: str = Field(default="{}", sa_column_kwargs={"server_default": "{}"})  # JSON type -> allowed elements
    expires_at: datetime
    approval: str  # the compact JWS of the ethics approval
    approval_id: str
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class ExportJob(SQLModel, table=True):
    """A Bulk Data export: durable, so a restarted records service resumes it from ``cursor``.

    ``wrapped_key`` is the job's AES-256 key wrapped by the KEK: its output
    parts are stored only as ciphertext under it.
    """

    __tablename__ = "records_export_job"
    id: str = Field(primary_key=True)
    project: str = Field(index=True)
    org: str
    caller: str  # the accessor's id, for the audit events the job writes
    role: str
    status: str = "queued"  # queued | running | completed | failed | cancelled
    request: str
    types: str  # JSON list
    since: datetime | None = None
    # JSON type -> the elements ``_elements`` narrows it to / the ``_typeFilter`` queries for it
    elements: str = Field(default="{}", sa_column_kwargs={"server_default": "{}"})
    type_filters: str = Field(default="{}", sa_column_kwargs={"server_default": "{}"})
    kek_id: str
    wrapped_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    cursor: str | None = None  # the last patient pseudonym whose output is stored
    patients_done: int = 0
    patients_total: int = 0
    excluded: str = "{}"  # JSON: reason -> patients left out
    withheld: str = "{}"  # JSON: reason -> resources left out
    event_id: str | None = None
    transaction_time: datetime = Field(default_factory=_now)
    created_at: datetime = Field(default_factory=_now)
    expires_at: datetime | None = None  # the output is deleted after it


class ExportPart(SQLModel, table=True):
    """One NDJSON output file of a job, encrypted with the job's key (AAD: job, type, part)."""

    __tablename__ = "records_export_part"
    pk: int | None = Field(default=None, primary_key=True)
    job: str = Field(index=True)
    rtype: str
    count: int
    digest: str  # SHA-256 of the plaintext NDJSON, as the audit event names it
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


def make_engine(url: str, migrate: bool = True) -> Engine:
    """An engine for ``url`` whose records schema is at the newest Alembic revision."""
    engine = engine_for(url, pool_size=20)
    if migrate:
        from services.records.migrations import upgrade

        upgrade(engine)
    return engine


def read_engine(engine: Engine) -> Engine:
    """The engine reads use: no transaction around them.

    Reads only read, and in READ COMMITTED each statement sees committed data
    whether or not a transaction surrounds it; without one a read is spared
    the BEGIN and ROLLBACK round trips.
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def newest_per_key(rows: Iterable[R], key: Callable[[R], str], version: Callable[[R], int]) -> dict[str, R]:
    """The row of the highest version for each key, keys in the order first seen.

    Records and consents are append-only (a change is a new version), so
    "the current state" is always this: every read that lists resources or
    consents, and the consumer deciding the next version number.
    """
    out: dict[str, R] = {}
    for row in rows:
        k = key(row)
        if k not in out or version(row) > version(out[k]):
            out[k] = row
    return out


def latest_versions(session: Session, rid_indexes: list[str]) -> dict[str, Record]:
    """The newest stored version of each resource in ``rid_indexes``."""
    if not rid_indexes:
        return {}
    rows = session.exec(select(Record).where(Record.rid_index.in_(rid_indexes))).all()  # type: ignore[attr-defined]
    return newest_per_key(rows, key=_RID, version=_VERSION)


def latest_of_patient(session: Session, patient: str | None, rtype: str | None = None) -> list[Record]:
    """The newest version of each of a patient's resources (of ``rtype`` if given), oldest resource first."""
    query = select(Record).where(Record.patient == patient)
    if rtype:
        query = query.where(Record.rtype == rtype)
    newest = newest_per_key(session.exec(query).all(), key=_RID, version=_VERSION)
    return sorted(newest.values(), key=lambda r: r.pk or 0)


def all_versions(session: Session, rid_index: str) -> list[Record]:
    """Every stored version of one resource, oldest first."""
    query = select(Record).where(Record.rid_index == rid_index).order_by(Record.version)  # type: ignore[arg-type]
    return list(session.exec(query).all())


def consent_versions(session: Session, consent_index: str) -> list[ConsentRow]:
    """Every version of one consent, oldest first."""
    query = select(ConsentRow).where(ConsentRow.consent_index == consent_index).order_by(ConsentRow.version)  # type: ignore[arg-type]
    return list(session.exec(query).all())


def latest_consents(session: Session, patient: str) -> list[ConsentRow]:
    """The newest version of each of a patient's consents, oldest consent first."""
    rows = session.exec(select(ConsentRow).where(ConsentRow.patient == patient)).all()
    newest = newest_per_key(rows, key=attrgetter("consent_index"), version=_VERSION)
    return sorted(newest.values(), key=lambda r: r.pk or 0)


_CARE = exists().where(CareLink.patient == bindparam("patient"), CareLink.hospital == bindparam("org"),  # type: ignore[arg-type]
                       CareLink.expires_at > bindparam("now"))  # type: ignore[operator]
_HAS_CONSENTS = exists().where(ConsentRow.patient == bindparam("patient"))  # type: ignore[arg-type]
# Built once: a statement made per call costs more CPU in SQLAlchemy's cache-key walk than the query in PostgreSQL.
_KEY_WITH_STATE = select(PatientKey, _CARE.label("care"), _HAS_CONSENTS.label("consents")).where(  # type: ignore[call-overload]
    PatientKey.patient == bindparam("patient"))
_STATE = select(_CARE.label("care"), _HAS_CONSENTS.label("consents"))  # type: ignore[call-overload]
_NEWEST_WITH_STATE = (
    select(Record.__table__, PatientKey.kek_id, PatientKey.wrapped,  # type: ignore[attr-defined,call-overload]
           exists().where(CareLink.patient == Record.patient, CareLink.hospital == bindparam("org"),
                          CareLink.expires_at > bindparam("now")).label("care"),  # type: ignore[operator]
           exists().where(ConsentRow.patient == Record.patient).label("consents"))
    .outerjoin(PatientKey, PatientKey.patient == Record.patient)  # type: ignore[arg-type]
    .where(Record.rid_index == bindparam("rid"))
    .order_by(Record.version.desc())  # type: ignore[attr-defined]
    .limit(1))


def patient_state(session: Session, patient: str, org: str) -> tuple[PatientKey | None, bool, bool]:
    """(the patient's key row, whether ``org`` cares for them, whether they have consents) in one query.

    A read needs all three; asking once instead of thrice is most of a read's
    database time. The key row is also loaded into the session, so the vault
    finds it there.
    """
    params = {"patient": patient, "org": org, "now": _now()}
    row = session.exec(_KEY_WITH_STATE, params=params).first()
    if row is not None:
        return row[0], bool(row[1]), bool(row[2])
    found = session.exec(_STATE, params=params).first()
    return None, bool(found[0]), bool(found[1])


class RecordRow(Protocol):
    """What reading a record needs of its row: a ``Record``, or a plain result row with its columns."""

    patient: str
    rtype: str
    rid_index: str
    version: int
    hospital: str
    ciphertext: bytes


class KeyRow(Protocol):
    """What unwrapping a data key needs of its row: a ``PatientKey``, or a plain result row."""

    patient: str
    kek_id: str
    wrapped: bytes | None


def newest_with_state(session: Session, rid_index: str, org: str
                      ) -> tuple[RecordRow, KeyRow | None, bool, bool] | None:
    """One resource's newest version and its patient's state (as ``patient_state``), in one query.

    The read of a single resource is the platform's most frequent request;
    one round trip instead of two is a third of its database cost. The result
    is the plain row (columns as attributes), serving as both the record and
    its patient's key row: building ORM objects from it cost as much CPU as
    the rest of the query.
    """
    row = session.connection().execute(_NEWEST_WITH_STATE, {"rid": rid_index, "org": org, "now": _now()}).first()
    if row is None:
        return None
    return row, (None if row.kek_id is None else row), bool(row.care), bool(row.consents)  # type: ignore[return-value]
