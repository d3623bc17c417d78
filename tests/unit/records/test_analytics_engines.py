"""The same query on DuckDB and on Spark (local mode) over the same store gives the same answer."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.records.analytics import query as q
from services.records.analytics.engines import DuckDBEngine, SparkEngine, cells
from services.records.analytics.sdc import Control
from tests.unit.records.analytics_support import (
    DIABETES,
    HYPERTENSION,
    ICD10,
    SNOMED,
    Vaulted,
    condition,
    population,
)

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime")

QUERIES = [
    {"cohort": {"types": ["Condition"]}},
    {"cohort": {"types": ["Condition"], "include": [{"system": SNOMED, "codes": [DIABETES]},
                                                    {"system": ICD10, "codes": ["E11"]}]},
     "measure": {"by": ["month", "district"]}},
    {"cohort": {"types": ["Condition"], "include": [{"system": SNOMED, "codes": [DIABETES]}],
                "exclude": [{"system": SNOMED, "codes": [HYPERTENSION]}], "sex": ["female"],
                "period": {"start": "2024-01-01", "end": "2024-12-31"}, "age": {"min": 18, "max": 80}},
     "measure": {"by": ["age_band"]}},
    {"cohort": {"types": ["Condition"], "hospitals": ["gy-hosp-002"]}, "measure": {"by": ["week", "sex"]}},
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBEngine, SparkEngine]]:
    v = Vaulted(Path(tmp_path_factory.mktemp("parity")))
    population(v, 14, district="Nanming", onset="2024-01-10")
    population(v, 9, district="Yunyan", onset="2024-02-20", gender="male", hospital="gy-hosp-002")
    population(v, 8, code="E11", district="Yunyan", onset="2023-12-21")
    hyper = population(v, 4, code=HYPERTENSION, district="Nanming", onset="2024-03-05")
    for pid in hyper[:2]:  # two of them have diabetes too: the exclusion takes them out
        v.put(pid, condition(pid, DIABETES, "2024-03-06"))
    v.store.update()
    spark = SparkEngine(v.store)
    yield DuckDBEngine(v.store), spark
    spark.stop()


def test_duckdb_and_spark_answer_alike(stores: tuple[DuckDBEngine, SparkEngine]) -> None:
    """One test, every query: Spark's start dominates, so the engines are compared in one session."""
    duck, spark = stores
    for n, doc in enumerate(QUERIES):
        query = q.parse(doc)
        text = q.sql(query, research=n % 2 == 1)
        columns = [q.GROUPS[g] for g in query.measure.by]
        on_duck, on_spark = cells(duck.run(text), columns), cells(spark.run(text), columns)
        assert on_duck == on_spark, doc
        assert len(on_duck[1]) > 0, doc
        by = list(query.measure.by)
        assert Control().protect(by, *on_duck).as_json() == Control().protect(by, *on_spark).as_json()
