"""The engines that run an analytic query's SQL over the store's files: DuckDB by default, Spark when outgrown.

Both see the files as one table ``facts`` and get the same SQL text
(``query.sql``); both return distinct (group columns, person) rows, which
``cells`` turns into the sets disclosure control needs. The files are
encrypted, so each engine reads them through the store's decrypting reader:
DuckDB scans a pyarrow dataset lazily (projection and filters pushed down to
the Parquet scan, decryption file by file); Spark in local mode is handed the
decrypted Arrow batches. On a Spark cluster the executors decrypt themselves:
parquet-mr's ``PropertiesDrivenCryptoFactory`` with a KMS client holding the
same master key (docs/architecture.md §16).
"""

from __future__ import annotations

import threading
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from services.records.analytics.flatten import SCHEMA
from services.records.analytics.query import Scope
from services.records.analytics.sdc import Key, Members
from services.records.analytics.store import AnalyticStore

UNKNOWN = "unknown"


class Engine(Protocol):
    name: str

    def run(self, sql: str, scope: Scope | None = None) -> pa.Table: ...


def dataset(store: AnalyticStore, scope: Scope | None = None) -> ds.Dataset:
    """The store's files (those ``scope`` can touch) as one lazily scanned, decrypting dataset."""
    chosen = store.files() if scope is None else store.files(scope.types, scope.years)
    files = [str(p) for p in chosen]
    if not files:
        return ds.dataset(SCHEMA.empty_table())
    return ds.dataset(files, schema=SCHEMA, format=store.cipher.dataset_format())


class DuckDBEngine:
    """DuckDB in process, one connection per query (a connection is not shared between threads)."""

    name = "duckdb"

    def __init__(self, store: AnalyticStore, threads: int = 2) -> None:
        self.store = store
        self.threads = threads

    def run(self, sql: str, scope: Scope | None = None) -> pa.Table:
        """``sql`` over the files ``scope`` can touch: every other file stays closed (no key unwrapped)."""
        con = duckdb.connect(config={"threads": self.threads, "enable_external_access": False})
        try:
            con.register("facts", dataset(self.store, scope))
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()


class SparkEngine:
    """pyspark (local mode in tests); the same SQL over the same files' rows."""

    name = "spark"
    _lock = threading.Lock()

    def __init__(self, store: AnalyticStore, master: str = "local[1]") -> None:
        from pyspark.sql import SparkSession  # imported here: Spark is optional at run time

        self.store = store
        self._loaded: int | None = None  # the store generation the ``facts`` view holds
        self.spark = (SparkSession.builder.master(master).appName("healthgov-analytics")
                      .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
                      .config("spark.sql.session.timeZone", "UTC").getOrCreate())

    def run(self, sql: str, scope: Scope | None = None) -> pa.Table:
        """``sql`` over the whole store, loaded once per store generation (``scope`` is not needed then)."""
        del scope
        with self._lock:
            if self._loaded != self.store.generation:
                frame = self.spark.createDataFrame(dataset(self.store).to_table()).cache()
                frame.createOrReplaceTempView("facts")
                self._loaded = self.store.generation
            rows = [row.asDict() for row in self.spark.sql(sql).collect()]
            return pa.Table.from_pylist(rows) if rows else pa.table({"person": pa.array([], pa.int64())})

    def stop(self) -> None:
        self.spark.stop()


def cells(table: pa.Table, by: list[str]) -> tuple[dict[Key, Members], Members]:
    """Distinct (group, person) rows → the set of people in each group, and everyone counted.

    Grouped by Arrow (one list of people per group), not row by row in Python:
    a district-by-month answer over millions of facts has hundreds of thousands
    of such rows.
    """
    if not table.num_rows:
        return {}, frozenset()
    persons = frozenset(table.column("person").to_pylist())
    if not by:
        return {(): persons}, persons
    grouped = table.group_by(by, use_threads=False).aggregate([("person", "list")])
    keys = zip(*(grouped.column(c).to_pylist() for c in by), strict=True)
    groups = {tuple(UNKNOWN if v is None else str(v) for v in key): frozenset(people)
              for key, people in zip(keys, grouped.column("person_list").to_pylist(), strict=True)}
    return groups, persons
