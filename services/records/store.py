"""Records storage: encrypted rows, wrapped data keys, care links (SQLModel).

No column holds plaintext PHI. A row is addressed by the patient pseudonym and
a blind index of ``type/id``; the resource, its labels and its id live only
inside the AES-GCM ciphertext, bound by AAD to the row.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, LargeBinary, UniqueConstraint, event
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, create_engine, select


def _now() -> datetime:
    return datetime.now(UTC)


class PatientKey(SQLModel, table=True):
    """A patient's data key, wrapped by a KEK. Shredding deletes ``wrapped``."""

    __tablename__ = "records_patient_key"
    patient: str = Field(primary_key=True)  # pseudonym
    kek_id: str
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
    rid_index: str = Field(index=True)  # blind index of "type/id"
    version: int
    hospital: str = Field(index=True)
    content_index: str  # keyed digest of the content: identical redelivery is a no-op
    submission_id: str
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=_now)


class CareLink(SQLModel, table=True):
    """A hospital that authored records for a patient: a care relationship."""

    __tablename__ = "records_care_link"
    __table_args__ = (UniqueConstraint("patient", "hospital"),)
    pk: int | None = Field(default=None, primary_key=True)
    patient: str = Field(index=True)
    hospital: str
    source: str = "authored"


class IdentifierIndex(SQLModel, table=True):
    """Blind index of a patient identifier (e.g. an MRN) → patient pseudonym."""

    __tablename__ = "records_identifier_index"
    __table_args__ = (UniqueConstraint("identifier_index", "patient"),)
    pk: int | None = Field(default=None, primary_key=True)
    identifier_index: str = Field(index=True)
    patient: str


def make_engine(url: str) -> Engine:
    kwargs: dict[str, object] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

    SQLModel.metadata.create_all(engine, tables=[
        PatientKey.__table__, Record.__table__, CareLink.__table__, IdentifierIndex.__table__,  # type: ignore[attr-defined]
    ])
    return engine


class UnitOfWork:
    """A session that rolls back unless ``commit()`` was called."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> UnitOfWork:
        self.session = Session(self.engine, expire_on_commit=False)
        return self

    def __exit__(self, *exc: object) -> None:
        # close() rolls back anything uncommitted but keeps loaded rows readable.
        self.session.close()

    def commit(self) -> None:
        self.session.commit()


def latest_versions(session: Session, rid_indexes: list[str]) -> dict[str, Record]:
    """The newest stored version of each resource in ``rid_indexes``."""
    if not rid_indexes:
        return {}
    rows = session.exec(select(Record).where(Record.rid_index.in_(rid_indexes))).all()  # type: ignore[attr-defined]
    out: dict[str, Record] = {}
    for row in rows:
        if row.rid_index not in out or row.version > out[row.rid_index].version:
            out[row.rid_index] = row
    return out
