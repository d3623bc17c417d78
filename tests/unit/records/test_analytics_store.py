"""The analytic store: de-identified, encrypted, kept current from the vault; queries on DuckDB."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from services.contracts import errors
from services.records.analytics import query as q
from services.records.analytics.engines import DuckDBEngine, cells
from services.records.analytics.flatten import COLUMNS
from services.records.analytics.parquet import Cipher
from services.records.analytics.store import StoreBusy
from tests.unit.records.analytics_support import (
    DIABETES,
    HYPERTENSION,
    ICD10,
    Vaulted,
    condition,
    patient,
    population,
)


@pytest.fixture
def v(tmp_path: Path) -> Vaulted:
    return Vaulted(tmp_path)


def count(v: Vaulted, doc: dict, *, research: bool = False) -> dict[tuple[str, ...], int]:  # type: ignore[type-arg]
    query = q.parse(doc)
    table = DuckDBEngine(v.store).run(q.sql(query, research=research), q.scope(query))
    groups, total = cells(table, [q.GROUPS[g] for g in query.measure.by])
    return {**{k: len(m) for k, m in groups.items()}, (): len(total)}


DIABETES_COHORT = {"cohort": {"types": ["Condition"], "include": [{"system": "http://snomed.info/sct",
                                                                   "codes": [DIABETES]}]}}


def test_the_store_holds_no_identifying_value_and_is_encrypted(v: Vaulted) -> None:
    v.put("pid-secret-1", patient("pid-secret-1"), condition("pid-secret-1", DIABETES, "2024-03-15"))
    stats = v.store.update()
    assert stats.patients == 1 and stats.rows == 1
    files = v.store.files()
    assert files and all("rtype=Condition" in str(f) and "decade=2020" in str(f) for f in files)
    raw = b"".join(f.read_bytes() for f in files)
    for needle in (b"pid-secret-1", b"Secretname", b"Hidden", b"520102196102030011", b"Secret Road", b"free text",
                   b"Display text", b"typed text", b"Nanming", DIABETES.encode(), b"1961-02-03"):
        assert needle not in raw, needle
    assert raw[:4] == b"PARE" and raw[-4:] == b"PARE"  # Parquet with an encrypted footer
    with pytest.raises(OSError):
        pq.read_table(files[0])  # no key, no data
    row = v.store.table().to_pylist()[0]
    assert set(row) == set(COLUMNS)
    assert row["district"] == "Nanming" and row["code"] == DIABETES and row["age_band"] == "60-69"
    assert row["sex"] == "female" and row["hospital"] == "gy-hosp-001" and row["month"] == "2024-03"
    assert isinstance(row["person"], int) and row["research_opt_out"] is False


def test_another_deployments_key_cannot_read_the_files(v: Vaulted) -> None:
    population(v, 1)
    v.store.update()
    with pytest.raises(OSError):
        Cipher(b"\x01" * 32).read(v.store.files()[0])


def test_new_versions_replace_old_rows_and_updates_are_incremental(v: Vaulted) -> None:
    v.put("p1", patient("p1"), condition("p1", DIABETES, "2024-03-15", cid="c1"))
    population(v, 9)
    v.store.update()
    assert count(v, DIABETES_COHORT)[()] == 10
    v.put("p1", condition("p1", HYPERTENSION, "2024-03-15", cid="c1"))  # corrected: not diabetes after all
    stats = v.store.update()
    assert stats.patients == 1  # only the patient whose records changed is re-read
    assert count(v, DIABETES_COHORT)[()] == 9
    assert v.store.update().patients == 0  # nothing new: nothing done


def test_erasure_removes_the_patients_rows(v: Vaulted) -> None:
    ids = population(v, 10)
    v.store.update()
    generation = v.store.generation
    v.erase(ids[0])
    v.store.update()
    assert count(v, DIABETES_COHORT)[()] == 9
    assert v.store.generation > generation
    assert len({r["person"] for r in v.store.table().to_pylist()}) == 9


def test_research_opt_out_leaves_research_answers_only(v: Vaulted) -> None:
    ids = population(v, 10)
    v.store.update()
    v.opt_out(ids[0])
    v.opt_out(ids[1], purpose="HPAYMT")  # an opt-out of something else changes nothing
    assert v.store.update().patients == 2
    assert count(v, DIABETES_COHORT)[()] == 10
    assert count(v, DIABETES_COHORT, research=True)[()] == 9


def test_rebuild_equals_the_incremental_store(v: Vaulted) -> None:
    ids = population(v, 6) + population(v, 4, district="Yunyan", onset="2023-11-02")
    v.store.update()
    v.erase(ids[0])
    v.put(ids[1], condition(ids[1], "E11", "2024-05-01", system=ICD10))
    v.store.update()
    incremental = sorted(tuple(sorted(r.items())) for r in v.store.table().to_pylist())
    v.store.rebuild()
    assert sorted(tuple(sorted(r.items())) for r in v.store.table().to_pylist()) == incremental


def test_cohort_codes_across_systems_exclusions_filters_and_groups(v: Vaulted) -> None:
    population(v, 12, district="Nanming", onset="2024-01-10")
    population(v, 9, district="Yunyan", onset="2024-02-20", gender="male")
    icd = population(v, 8, code="E11", district="Yunyan", onset="2024-02-21")
    for pid in icd:  # stored as ICD-10
        v.put(pid, condition(pid, "E11", "2024-02-21", system=ICD10))
    hypertensive = population(v, 3, code=HYPERTENSION, district="Nanming", onset="2024-01-05", prefix="h")
    for pid in hypertensive:
        v.put(pid, condition(pid, DIABETES, "2024-01-06"))
    v.store.update()
    both = {"types": ["Condition"], "include": [{"system": "http://snomed.info/sct", "codes": [DIABETES]},
                                                {"system": ICD10, "codes": ["E11"]}]}
    assert count(v, {"cohort": both})[()] == 12 + 9 + 8 + 3
    by_district = count(v, {"cohort": both, "measure": {"by": ["district"]}})
    assert by_district[("Nanming",)] == 15 and by_district[("Yunyan",)] == 17
    excluded = {**both, "exclude": [{"system": "http://snomed.info/sct", "codes": [HYPERTENSION]}]}
    assert count(v, {"cohort": excluded})[()] == 29
    assert count(v, {"cohort": {**both, "sex": ["male"]}})[()] == 9
    assert count(v, {"cohort": {**both, "period": {"start": "2024-02-01", "end": "2024-02-29"}}})[()] == 17
    assert count(v, {"cohort": {**both, "age": {"min": 70, "max": 90}}})[()] == 0
    months = count(v, {"cohort": both, "measure": {"by": ["month", "sex"]}})
    assert months[("2024-01", "female")] == 15 and months[("2024-02", "male")] == 9


@pytest.mark.parametrize("doc", [
    {},
    {"cohort": {"types": ["Claim"]}},
    {"cohort": {"types": ["Condition"], "include": [{"system": "not a uri", "codes": ["x"]}]}},
    {"cohort": {"types": ["Condition"], "include": [{"system": "http://snomed.info/sct",
                                                     "codes": ["1' OR '1'='1"]}]}},
    {"cohort": {"types": ["Condition"], "districts": ["x'); DROP TABLE facts; --"]}},
    {"cohort": {"types": ["Condition"]}, "measure": {"by": ["name"]}},
    {"cohort": {"types": ["Condition"]}, "measure": {"by": ["month"]}, "feasibility": True},
    {"cohort": {"types": ["Condition"], "period": {"start": "2025-01-01", "end": "2024-01-01"}}},
    {"cohort": {"types": ["Condition"]}, "sql": "SELECT * FROM facts"},
])
def test_bad_queries_are_refused_with_a_reason(doc: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(errors.Invalid):
        q.parse(doc)


def test_a_row_committed_late_below_the_watermark_is_still_taken_in(v: Vaulted) -> None:
    """Sequences hand out keys at insert, transactions commit in any order: a gap is looked at again."""
    from sqlmodel import Session, select

    from services.records.store import Record

    population(v, 9)
    late = population(v, 1)[0]
    population(v, 2)
    with Session(v.engine) as s:  # the late patient's rows are "not committed yet" when the store updates
        rows = s.exec(select(Record).where(Record.patient == v.vault.pseudonym(late))).all()
        held = [Record(**r.model_dump()) for r in rows]
        for r in rows:
            s.delete(r)
        s.commit()
    v.store.update()
    assert count(v, DIABETES_COHORT)[()] == 11
    with Session(v.engine) as s:  # now they commit, with their keys below the watermark
        s.add_all(held)
        s.commit()
    assert v.store.update().patients == 1
    assert count(v, DIABETES_COHORT)[()] == 12


def test_an_erasure_stamped_before_one_already_taken_in_still_removes_the_rows(v: Vaulted) -> None:
    from datetime import timedelta

    from sqlmodel import Session

    from services.records.store import PatientKey

    first, second = population(v, 10)[:2]
    v.store.update()
    v.erase(first)
    v.store.update()
    v.erase(second)
    with Session(v.engine) as s:  # its transaction stamped it earlier but committed later
        key = s.get(PatientKey, v.vault.pseudonym(second))
        stamped = s.get(PatientKey, v.vault.pseudonym(first)).shredded_at  # type: ignore[union-attr]
        key.shredded_at = stamped - timedelta(seconds=30)  # type: ignore[union-attr,operator]
        s.add(key)
        s.commit()
    v.store.update()
    assert count(v, DIABETES_COHORT)[()] == 8


def test_a_query_waits_only_so_long_for_an_update_under_way_elsewhere(v: Vaulted) -> None:
    """Another process's update holds the store: the query is a 503 after ``wait_s``, not a worker held for ever."""
    v.store.root.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; fh = open(sys.argv[1], 'a+'); fcntl.flock(fh, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(60)"), str(v.store.root / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy) as busy:
            v.store.update(wait_s=0.3)
        assert busy.value.status == 503 and busy.value.headers["Retry-After"]
    finally:
        holder.kill()
        holder.wait()
    assert v.store.update(wait_s=5).patients >= 0  # the holder gone, the update goes through
    with open(v.store.root / ".lock", "a+") as fh:  # and it let go of the lock when done
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_an_update_opens_only_the_files_holding_the_patients_it_changes(v: Vaulted,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Which files hold whom is remembered: a store of many files is not decrypted whole at every update."""
    for i in range(6):
        v.put(f"p{i}", patient(f"p{i}"), condition(f"p{i}", DIABETES, f"{1960 + 10 * i}-05-01"))
        v.store.update()  # one patient per update: six files, one per decade
    assert len(v.store.files()) == 6
    opened: list[str] = []
    real = Cipher.read
    monkeypatch.setattr(Cipher, "read", lambda self, path, columns=None: opened.append(path.parent.name)
                        or real(self, path, columns))
    v.put("p2", condition("p2", HYPERTENSION, "1980-06-01"))
    assert v.store.update().patients == 1
    assert opened == ["decade=1980"]  # p2's one file, rewritten; none of the five others
    assert count(v, {"cohort": {"types": ["Condition"], "include": [{"system": "http://snomed.info/sct",
                                                                     "codes": [HYPERTENSION]}]}}) == {(): 1}


def test_a_query_opens_only_the_files_of_its_types_and_period(v: Vaulted) -> None:
    v.put("p1", patient("p1"), condition("p1", DIABETES, "1975-01-01"), condition("p1", DIABETES, "2021-01-01"),
          {"resourceType": "Immunization", "id": "im1", "patient": {"reference": "Patient/p1"},
           "occurrenceDateTime": "2021-02-01", "status": "completed",
           "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "207"}]}})
    v.store.update()
    everything = v.store.files()
    assert len(everything) == 3
    query = q.parse({"cohort": {"types": ["Condition"], "period": {"start": "2020-01-01"}}})
    assert [f.parent.name for f in v.store.files(q.scope(query).types, q.scope(query).years)] == ["decade=2020"]
    assert [f.parent.parent.name for f in v.store.files(["Condition"])] == ["rtype=Condition"] * 2
    # and what is left closed could not have changed the answer
    assert DuckDBEngine(v.store).run(q.sql(query, research=False), q.scope(query)).num_rows == 1
