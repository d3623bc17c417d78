"""One patient's trail as the portal pages it: newest first, totals, own reads counted apart, filters."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from services.audit import query, store

ENTRY = query.ENTRY


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store.migrate(url)
    return store.connect(url)


def _add(engine: Engine, rows: list[dict[str, object]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(ENTRY), rows)


def _row(idx: int, patient: str = "p1", kind: str = "disclosure", org_type: str = "hospital",
         org: str = "gy-hosp-001", at: str | None = None, notify_after: str | None = None,
         purpose: str = "TREAT") -> dict[str, object]:
    default_at = f"2026-12-01T00:{idx // 60 % 60:02d}:{idx % 60:02d}.000000Z"
    return {"idx": idx, "event_id": f"e{idx}", "body": b"{}", "occurred_at": at or default_at, "kind": kind,
            "outcome": "denied" if kind == "denial" else "allowed",
            "patient": patient, "accessor_id": "u", "accessor_org": org, "accessor_org_type": org_type,
            "purpose": purpose, "notify_after": notify_after}


def test_pages_go_newest_first_beyond_two_hundred_with_totals(engine: Engine) -> None:
    _add(engine, [_row(i) for i in range(250)] + [_row(1000 + i, patient="p2") for i in range(5)])
    first = query.patient_trail(engine, query.EventFilter(patient="p1"), page=1, per_page=20)
    assert first.total == 250
    assert [r.idx for r in first.rows] == list(range(249, 229, -1))
    last = query.patient_trail(engine, query.EventFilter(patient="p1"), page=13, per_page=20)
    assert [r.idx for r in last.rows] == list(range(9, -1, -1))


def test_the_patients_own_reads_are_counted_not_listed(engine: Engine) -> None:
    _add(engine, [_row(0), _row(1, org_type="patient", org="healthgov-portal", purpose="PATRQT"),
                  _row(2, org_type="patient", org="healthgov-portal", purpose="PATRQT"), _row(3, kind="break_glass"),
                  _row(4, kind="consent", org_type="patient", org="healthgov-portal", purpose="PATRQT")])
    got = query.patient_trail(engine, query.EventFilter(patient="p1"))
    assert [r.idx for r in got.rows] == [4, 3, 0]  # the patient's own consent change is an act, not a view
    assert got.total == 3 and got.own_views == 2 and got.own_last == _row(2)["occurred_at"]


def test_a_guardians_views_and_the_patients_downloads_are_rows(engine: Engine) -> None:
    portal = {"org_type": "patient", "org": "healthgov-portal"}
    _add(engine, [_row(0, **portal, purpose="PATRQT"), _row(1, **portal, purpose="PWATRNY"),
                  _row(2, kind="download", **portal, purpose="PATRQT"),
                  _row(3, kind="download", **portal, purpose="PWATRNY")])
    got = query.patient_trail(engine, query.EventFilter(patient="p1"))
    assert [r.idx for r in got.rows] == [3, 2, 1]  # the guardian acting for the patient, and every copy taken
    assert got.own_views == 1


def test_filters_by_kind_group_org_type_org_and_time(engine: Engine) -> None:
    _add(engine, [_row(0, kind="denial"), _row(1, kind="break_glass"), _row(2, org_type="law_enforcement",
                                                                             org="gy-police"),
                  _row(3, org="gy-hosp-002"), _row(4, at="2026-12-03T00:00:00.000000Z")])
    def ids(**kw: object) -> list[int]:
        flt = query.EventFilter(patient="p1",
                                **{k: v for k, v in kw.items() if k in ("accessor_org", "since", "until")})
        extra = {k: v for k, v in kw.items() if k in ("kinds", "org_types")}
        return [int(r.idx) for r in query.patient_trail(engine, flt, **extra).rows]  # type: ignore[arg-type]

    assert ids(kinds=("denial", "break_glass")) == [1, 0]
    assert ids(org_types=("law_enforcement", "regulator")) == [2]
    assert ids(accessor_org="gy-hosp-002") == [3]
    assert ids(since="2026-12-02T00:00:00.000000Z") == [4]
    assert ids(until="2026-12-02T00:00:00.000000Z") == [3, 2, 1, 0]


def test_sealed_events_stay_hidden_until_their_time(engine: Engine) -> None:
    _add(engine, [_row(0), _row(1, org_type="law_enforcement", notify_after="2027-01-01T00:00:00.000000Z")])
    before = query.patient_trail(engine, query.EventFilter(patient="p1", visible_at="2026-12-06T00:00:00.000000Z"))
    after = query.patient_trail(engine, query.EventFilter(patient="p1", visible_at="2027-02-01T00:00:00.000000Z"))
    assert ([r.idx for r in before.rows], before.total) == ([0], 1)
    assert ([r.idx for r in after.rows], after.total) == ([1, 0], 2)


def test_a_trail_is_always_one_patients(engine: Engine) -> None:
    with pytest.raises(query.BadQuery):
        query.patient_trail(engine, query.EventFilter())
