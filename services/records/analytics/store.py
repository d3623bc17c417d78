"""The de-identified analytic store: kept current from records' vault (docs/architecture.md §16).

Layout: ``<root>/rtype=<type>/decade=<yyy0>/part-<id>.parquet``, each file
encrypted (``parquet.py``), and ``<root>/manifest.json`` with the watermarks of
what the store has taken in. Partitions let a query open only the files of
the types and decades it names (``files(types, years)``); the year itself is
a column (``period``). A decade, not a year: one patient's history spans
decades, and every partition it touches costs a new file at each update, so
finer partitions meant thousands of small files, each a key unwrap and a
decryption for every query.

**Which files hold a patient** is kept in memory (``_persons``: each file's
distinct pseudonyms, checked against its size and modification time), so an
update opens only the files it must rewrite, not every file of the store;
a file another records process wrote is read once, when first seen.

**Kept current by a step after records stores, not by a second consumer.**
``update`` reads what records committed since the watermarks: patients with new
record versions (``records_resource.pk``), changed consents
(``records_consent.pk``) and erasures (``records_patient_key.shredded_at``).
For each such patient it removes their rows from every file holding them and
writes their current rows (decrypted from the vault) as new files. That is
idempotent: an update cut short by a crash leaves the watermarks where they
were, and the next one redoes the same patients, removing whatever the broken
one wrote. Reading the vault rather than the topic means the store shows
exactly what records holds: versions, erasure and opt-outs included, with no
second copy of the HPKE key. Sequence values can commit out of order across
concurrent transactions, so a key skipped below the watermark is remembered
as a gap and looked for again (``_changed``). ``rebuild`` starts from nothing.

An erased patient's data key is gone, so nothing of theirs can be decrypted
again; their rows are removed at the next update, which every query runs first.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlmodel import Session, select

from services.adapters import crypto
from services.contracts import errors
from services.contracts.envelope import DIRECTORY_KEY
from services.records import consents
from services.records.analytics import flatten
from services.records.analytics.parquet import Cipher
from services.records.store import ConsentRow, PatientKey, Record, latest_consents, newest_per_key
from services.records.vault import Shredded, Vault

log = logging.getLogger(__name__)
GAP_SECONDS = 600.0  # longer than any records transaction lasts
MAX_GAPS = 10_000
BATCH_PATIENTS = 500
COMPACT_FILES = 16  # a partition with more files than this is merged into one
LOCK_POLL_S = 0.05


class StoreBusy(errors.Unavailable):
    """Another update of the store is under way; the query is answered after it, so asked again later."""

    def __init__(self) -> None:
        super().__init__("the analytic store is being brought up to date, try again shortly")


def person_of(key: bytes, pseudonym: str) -> int:
    """The store's pseudonym: 63 bits of an HMAC of the platform pseudonym under the store's own key.

    A separate key means a value in the store cannot be joined to the
    pseudonyms in the audit log or on Kafka keys without records' key.
    """
    return int(crypto.keyed_digest(key, "analytics-person", pseudonym)[:16], 16) >> 1


def research_opt_out(docs: list[dict[str, Any]], now: datetime) -> bool:
    """Whether the patient refuses research use: an opt-out (deny) for HRESCH or any purpose, in force.

    As the policy reads opt-outs (``consent.rego``): withdrawn ones do not
    count, a lapsed one (expiry passed) does not, a malformed expiry never
    lifts one. An opt-out naming one research organisation excludes the
    patient from every research answer here: a count cannot leave someone out
    for one recipient only without that difference being the disclosure.
    """
    for c in docs:
        if c.get("decision") != "deny" or c.get("purpose") not in ("HRESCH", "*"):
            continue
        if c.get("revoked") is True or c.get("status", "active") != "active":
            continue
        expires = c.get("expires")
        try:
            if isinstance(expires, str) and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= now:
                continue
        except ValueError:
            pass
        return True
    return False


@dataclass
class Marks:
    """How far the store has read the vault."""

    resource_pk: int = 0
    consent_pk: int = 0
    # Keys below the mark not seen yet (a transaction that took them may still commit), with when first missed.
    resource_gaps: dict[str, str] = field(default_factory=dict)
    consent_gaps: dict[str, str] = field(default_factory=dict)
    shredded_at: str = "1970-01-01T00:00:00+00:00"  # the newest erasure taken in
    recent_erasures: list[str] = field(default_factory=list)  # those taken in within GAP_SECONDS of it
    updated_at: str | None = None
    # Names the files' content, new at every change of them: answers computed on one content are cached
    # under it by every records process sharing the store (a per-process counter would not see the others').
    version: str = ""


@dataclass(frozen=True)
class UpdateStats:
    patients: int
    rows: int
    files_written: int
    seconds: float


class AnalyticStore:
    def __init__(self, root: Path, *, engine: Any, vault: Vault, person_key: bytes, master_key: bytes) -> None:
        self.root = root
        self.engine = engine
        self.vault = vault
        self.person_key = person_key
        self.cipher = Cipher(master_key)
        self._lock = threading.RLock()
        self._persons: dict[Path, tuple[tuple[int, int], pa.Array]] = {}  # file -> (size, mtime), its people
        self.generation = 0  # bumped by every change of the files this process made: what an engine reloads on

    # --- the files ------------------------------------------------------------------

    def files(self, types: list[str] | None = None, years: tuple[int, int] | None = None) -> list[Path]:
        """The store's files; only those that can hold rows of ``types`` within ``years`` (inclusive) if given."""
        found = []
        for rtype_dir in self.root.glob("rtype=*"):
            if types is not None and rtype_dir.name.removeprefix("rtype=") not in types:
                continue
            for part in rtype_dir.iterdir():
                if years is not None and not _decade_overlaps(part.name, years):
                    continue
                found.extend(part.glob("*.parquet"))
        return sorted(found)

    def version(self) -> str:
        """The files' current content version (``Marks.version``)."""
        return self._marks().version

    def _marks(self) -> Marks:
        path = self.root / "manifest.json"
        return Marks(**orjson.loads(path.read_bytes())) if path.exists() else Marks()

    def _save_marks(self, marks: Marks) -> None:
        path = self.root / "manifest.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(marks.__dict__))
        tmp.replace(path)

    @contextmanager
    def locked(self, wait_s: float | None = None) -> Iterator[None]:
        """One writer per store (threads, and processes through a lock file); readers wait for it.

        ``wait_s`` bounds the wait (None: for as long as it takes): a query must not hold a web worker
        for as long as another process's large update lasts. Past it, ``StoreBusy`` (a 503 with Retry-After).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        deadline = None if wait_s is None else time.monotonic() + wait_s
        if not self._lock.acquire(timeout=-1 if wait_s is None else wait_s):
            raise StoreBusy()
        try:
            with open(self.root / ".lock", "a+") as fh:
                while True:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:  # type: ignore[operator]
                            raise StoreBusy() from None
                        time.sleep(LOCK_POLL_S)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def table(self) -> pa.Table:
        """Every row, decrypted (small stores and tests; engines scan ``dataset`` lazily)."""
        files = self.files()
        if not files:
            return flatten.SCHEMA.empty_table()
        return pa.concat_tables([self._read(f) for f in files])

    def _read(self, path: Path, columns: list[str] | None = None) -> pa.Table:
        return self.cipher.read(path, columns=columns)

    # --- keeping current --------------------------------------------------------------

    def rebuild(self) -> UpdateStats:
        """Start over from the vault (after a key change, or to check an incremental store against)."""
        with self.locked():
            for child in self.root.glob("rtype=*"):
                shutil.rmtree(child)
            (self.root / "manifest.json").unlink(missing_ok=True)
            return self._update()

    def update(self, wait_s: float | None = None) -> UpdateStats:
        """Take in what records committed since the last update (waiting at most ``wait_s`` for another one)."""
        with self.locked(wait_s):
            return self._update()

    def _update(self) -> UpdateStats:
        started = time.perf_counter()
        self._forget_missing()
        marks = self._marks()
        now = datetime.now(UTC)
        with Session(self.engine) as s:
            patients, resource_pk, resource_gaps = _changed(s, Record, marks.resource_pk, marks.resource_gaps, now)
            more, consent_pk, consent_gaps = _changed(s, ConsentRow, marks.consent_pk, marks.consent_gaps, now)
            patients |= more
            # An erasure is stamped before its transaction commits, so one may appear with a time below
            # the newest already seen: erasures are looked for GAP_SECONDS back, each taken in once.
            since = datetime.fromisoformat(marks.shredded_at) - timedelta(seconds=GAP_SECONDS)
            shred_rows = s.exec(select(PatientKey.patient, PatientKey.shredded_at).where(
                PatientKey.shredded_at > since)).all()  # type: ignore[operator]
            patients |= {p for p, _ in shred_rows if p not in marks.recent_erasures}
            patients.discard(DIRECTORY_KEY)
        ordered = sorted(patients)
        written = rows = 0
        for i in range(0, len(ordered), BATCH_PATIENTS):
            batch = ordered[i:i + BATCH_PATIENTS]
            table = self._facts(batch, now)
            written += self._replace({person_of(self.person_key, p) for p in batch}, table)
            rows += table.num_rows
        version = marks.version
        if ordered:
            written += self._compact()
            self.generation += 1
            version = uuid.uuid4().hex
        last_shred = max([datetime.fromisoformat(marks.shredded_at), *(_utc(at) for _, at in shred_rows)])
        recent = sorted(p for p, at in shred_rows if _utc(at) > last_shred - timedelta(seconds=GAP_SECONDS))
        self._save_marks(Marks(resource_pk=resource_pk, consent_pk=consent_pk, resource_gaps=resource_gaps,
                               consent_gaps=consent_gaps, shredded_at=last_shred.isoformat(),
                               recent_erasures=recent, updated_at=now.isoformat(), version=version))
        return UpdateStats(patients=len(ordered), rows=rows, files_written=written,
                           seconds=time.perf_counter() - started)

    def _facts(self, patients: list[str], now: datetime) -> pa.Table:
        """The current fact rows of ``patients`` (none for an erased one), decrypted from the vault."""
        out: list[dict[str, Any]] = []
        with Session(self.engine) as s:
            records = s.exec(select(Record).where(Record.patient.in_(patients))).all()  # type: ignore[attr-defined]
            by_patient: dict[str, list[Record]] = defaultdict(list)
            for r in newest_per_key(records, key=lambda r: r.rid_index, version=lambda r: r.version).values():
                by_patient[r.patient].append(r)
            keys = {k.patient: k for k in s.exec(select(PatientKey).where(PatientKey.patient.in_(patients))).all()}  # type: ignore[attr-defined]
            for patient in patients:
                key = keys.get(patient)
                if key is None or key.wrapped is None:
                    continue
                try:
                    plains = [self.vault.open_row(s, r, key) for r in sorted(by_patient[patient], key=_pk)]
                    docs = [c for row in latest_consents(s, patient)
                            for c in consents.to_policy(self.vault.open_consent(s, row, key))]
                except Shredded:
                    continue  # erased while we read: nothing of theirs goes in
                resources = [p.resource for p in plains]
                who = flatten.person_of(next((r for r in resources if r.get("resourceType") == "Patient"), None),
                                        person_of(self.person_key, patient), research_opt_out(docs, now))
                out.extend(flatten.rows(who, ((p.resource, p.row.hospital) for p in plains)))
        return pa.Table.from_pylist(out, schema=flatten.SCHEMA)

    def _replace(self, persons: set[int], table: pa.Table) -> int:
        """Remove ``persons``' rows from every file, then add ``table`` (their current rows) as new files."""
        wanted = pa.array(sorted(persons), type=pa.int64())
        written = 0
        for path in self.files():
            if not pc.any(pc.is_in(self._persons_in(path), value_set=wanted)).as_py():
                continue
            kept = self._read(path)
            kept = kept.filter(pc.invert(pc.is_in(kept["person"], value_set=wanted)))
            if kept.num_rows:
                self._write(kept, path)
                written += 1
            else:
                path.unlink()
                self._persons.pop(path, None)
        if table.num_rows:
            for directory, part in partitions(table):
                self._write(part, self.root / directory / f"part-{uuid.uuid4().hex}.parquet")
                written += 1
        return written

    def _persons_in(self, path: Path) -> pa.Array:
        """The distinct people with rows in ``path``: remembered, read again only if the file changed."""
        stat = path.stat()
        signature = (stat.st_size, stat.st_mtime_ns)
        known = self._persons.get(path)
        if known is not None and known[0] == signature:
            return known[1]
        people = pc.unique(self._read(path, ["person"])["person"].combine_chunks())
        self._persons[path] = (signature, people)
        return people

    def _write(self, table: pa.Table, path: Path) -> None:
        self.cipher.write(table, path)
        stat = path.stat()
        self._persons[path] = ((stat.st_size, stat.st_mtime_ns), pc.unique(table["person"].combine_chunks()))

    def _forget_missing(self) -> None:
        """Drop what is remembered of files no longer there (compacted or emptied, here or by another process)."""
        for path in [p for p in self._persons if not p.exists()]:
            del self._persons[path]

    def _compact(self) -> int:
        written = 0
        for directory in sorted(d for d in self.root.glob("rtype=*/*") if d.is_dir()):
            parts = sorted(directory.glob("*.parquet"))
            if len(parts) > COMPACT_FILES:
                merged = pa.concat_tables([self._read(p) for p in parts])
                self._write(merged, directory / f"part-{uuid.uuid4().hex}.parquet")
                for p in parts:
                    p.unlink()
                    self._persons.pop(p, None)
                written += 1
        return written


def _changed(s: Session, table: Any, mark: int, gaps: dict[str, str], now: datetime
             ) -> tuple[set[str], int, dict[str, str]]:
    """Patients with rows of ``table`` committed since ``mark`` or filling a gap; the new mark and gaps.

    A sequence hands out keys at insert time but transactions commit in any
    order: a key below the mark that is missing now may still appear. Such
    gaps are remembered and looked at again until ``GAP_SECONDS`` have passed
    (a rolled-back insert leaves a gap for ever).
    """
    pk, patient = table.pk, table.patient
    rows = s.exec(select(pk, patient).where(pk > mark)).all()
    waiting = [int(k) for k in gaps]
    if waiting:
        rows += s.exec(select(pk, patient).where(pk.in_(waiting))).all()
    seen = {int(k) for k, _ in rows}
    top = max([mark, *seen])
    fresh: dict[str, str] = {}
    previous = mark
    for k in sorted(x for x in seen if x > mark):
        for missing in range(previous + 1, min(k, previous + 1 + MAX_GAPS)):
            fresh[str(missing)] = now.isoformat()
        previous = k
    kept = {k: at for k, at in gaps.items() if int(k) not in seen
            and (now - datetime.fromisoformat(at)).total_seconds() < GAP_SECONDS}
    return {p for _, p in rows}, top, dict(sorted({**kept, **fresh}.items())[-MAX_GAPS:])


def partition_of(rtype: str, year: str) -> str:
    """The directory, under the store's root, of rows of ``rtype`` in ``year``."""
    return f"rtype={rtype}/decade={int(year) // 10 * 10:04d}"


def partitions(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """``table`` split by partition directory."""
    directories = [partition_of(t, y) for t, y in zip(table["rtype"].to_pylist(), table["period"].to_pylist(),
                                                        strict=True)]
    column = pa.array(directories)
    for directory in sorted(set(directories)):
        yield directory, table.filter(pc.equal(column, directory))


def _decade_overlaps(name: str, years: tuple[int, int]) -> bool:
    """Whether partition directory ``name`` can hold a year in ``years``; an unknown name always can."""
    key, _, value = name.partition("=")
    if key != "decade" or not value.isdigit():
        return True
    start = int(value)
    return start <= years[1] and years[0] <= start + 9


def _pk(r: Record) -> int:
    return r.pk or 0


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
