"""The oversight schema is Alembic's: head builds exactly the tables, and a revision keeps the rows before it."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from services.oversight import migrations, store


def test_head_builds_exactly_the_tables_and_0004_keeps_what_came_before_it(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'o.db'}", migrate=False)
    migrations.upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO oversight_access (org, accessor_id, hour, org_type, reads, denials, break_glass)"
                          " VALUES ('h1', 'dr-a', '2026-11-01 08:00:00.000000', 'hospital', 3, 0, 0),"
                          " ('h1', 'dr-a', '2026-11-03 09:00:00.000000', 'hospital', 1, 0, 1),"
                          " ('ins', 'clerk', '2026-11-02 10:00:00.000000', 'insurer', 0, 2, 0)"))
        for i, (org, kind) in enumerate([("h1", "disclosure"), ("h1", "disclosure"), ("h1", "denial"),
                                         ("ins", "denial")]):
            conn.execute(text("INSERT INTO oversight_event (event_id, occurred_at, kind, accessor_id, accessor_org,"
                              " org_type, role, resources, body) VALUES (:i, '2026-11-01 08:00:00.000000', :k,"
                              " 'dr-a', :o, 'hospital', 'clinician', 1, '{}')"), {"i": f"e{i}", "k": kind, "o": org})
    migrations.upgrade(engine)
    with engine.connect() as conn:
        rows = sorted(tuple(r) for r in conn.execute(text(
            "SELECT org, accessor_id, org_type, last_hour FROM oversight_accessor")).all())
        counted = sorted(tuple(r) for r in conn.execute(text(
            "SELECT accessor_org, kind, n FROM oversight_event_count")).all())
        ctx = MigrationContext.configure(conn, opts={"include_object": migrations.include_object,
                                                     "compare_type": True})
        diff = compare_metadata(ctx, store.metadata)
    assert rows == [("h1", "dr-a", "hospital", "2026-11-03 09:00:00.000000"),
                    ("ins", "clerk", "insurer", "2026-11-02 10:00:00.000000")]
    assert counted == [("h1", "denial", 1), ("h1", "disclosure", 2), ("ins", "denial", 1)]
    assert diff == []
    engine.dispose()
