"""The records schema is Alembic's, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from services.records import migrations
from services.records.store import RECORDS_TABLE_NAMES, make_engine


def _diff(engine) -> list:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_object": migrations.include_object,
                                                     "compare_type": True})
        return compare_metadata(ctx, SQLModel.metadata)


def test_upgrade_builds_exactly_the_models(db) -> None:  # type: ignore[no-untyped-def]
    engine = db.engine()
    assert migrations.current(engine) == migrations.head()
    assert set(inspect(engine).get_table_names()) >= RECORDS_TABLE_NAMES
    assert _diff(engine) == []
    make_engine(db.url).dispose()  # a second start is a no-op
    assert migrations.current(engine) == migrations.head()
    engine.dispose()


def test_downgrade_to_base_and_back(db) -> None:  # type: ignore[no-untyped-def]
    engine = db.engine()
    migrations.downgrade(engine, "base")
    assert not RECORDS_TABLE_NAMES & set(inspect(engine).get_table_names())
    assert migrations.current(engine) is None
    migrations.upgrade(engine)
    assert _diff(engine) == []
    engine.dispose()


def _skeleton_tables() -> sa.MetaData:
    """The records tables exactly as the walking skeleton's ``create_all`` made them."""
    md = sa.MetaData()
    text_, when = AutoString, UTCDateTime
    sa.Table("records_patient_key", md, sa.Column("patient", text_(), primary_key=True),
             sa.Column("kek_id", text_(), nullable=False), sa.Column("wrapped", sa.LargeBinary()),
             sa.Column("created_at", when(), nullable=False), sa.Column("shredded_at", when()))
    sa.Table("records_resource", md, sa.Column("pk", sa.Integer(), primary_key=True),
             *(sa.Column(c, text_(), nullable=False, index=c in ("patient", "rtype", "rid_index", "hospital"))
               for c in ("patient", "rtype", "rid_index")),
             sa.Column("version", sa.Integer(), nullable=False),
             *(sa.Column(c, text_(), nullable=False, index=c == "hospital")
               for c in ("hospital", "content_index", "submission_id")),
             sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
             sa.Column("created_at", when(), nullable=False), sa.UniqueConstraint("rid_index", "version"))
    sa.Table("records_care_link", md, sa.Column("pk", sa.Integer(), primary_key=True),
             sa.Column("patient", text_(), nullable=False, index=True), sa.Column("hospital", text_(), nullable=False),
             sa.Column("source", text_(), nullable=False), sa.UniqueConstraint("patient", "hospital"))
    sa.Table("records_identifier_index", md, sa.Column("pk", sa.Integer(), primary_key=True),
             sa.Column("identifier_index", text_(), nullable=False, index=True),
             sa.Column("patient", text_(), nullable=False), sa.UniqueConstraint("identifier_index", "patient"))
    return md


def test_a_database_from_before_migrations_is_adopted_with_its_rows(db) -> None:  # type: ignore[no-untyped-def]
    engine = db.engine(migrate=False)
    _skeleton_tables().create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO records_care_link (patient, hospital, source) "
                          "VALUES ('p-1', 'h-1', 'authored')"))
    migrations.upgrade(engine)
    assert migrations.current(engine) == migrations.head()
    assert _diff(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT patient, hospital, referred_by FROM records_care_link")).all() == [
            ("p-1", "h-1", None)]
    engine.dispose()


def test_other_services_tables_are_left_alone(db) -> None:  # type: ignore[no-untyped-def]
    engine = db.engine(migrate=False)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE audit_neighbour (x INTEGER)"))
    migrations.upgrade(engine)
    migrations.downgrade(engine, "base")
    assert "audit_neighbour" in inspect(engine).get_table_names()
    engine.dispose()
