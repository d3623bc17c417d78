"""From validated resources to sealed Kafka messages: the CPU-bound core of ingest.

Pure functions over bytes and dicts (no I/O), so the worker processes of the
validation pool run them in parallel: parse, validate (fhir.resources),
resolve references, assign missing ids, label, group by patient and seal. Only
the sealed bytes travel back to the parent, which sends them to Kafka.

Resources of one patient travel together, up to ``message_resources`` per
message: one HPKE seal and one Kafka record for many resources, all keyed by
the patient pseudonym so that one patient's records stay in order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from services.adapters import crypto
from services.adapters.kafka import Message
from services.contracts.envelope import DIRECTORY_KEY, envelope_aad
from services.contracts.events import IngestEnvelope, rfc3339, utcnow
from services.contracts.topics import INGEST_RESOURCES
from services.fhir.compartment import patient_id_of
from services.fhir.validation import Issue, validate_resource
from services.ingest import references
from services.ingest.labels import LabelTable, load_table

_ID_NAMESPACE = uuid.UUID("6f0b1a52-8d0c-4c1e-9a57-3c1f0e3b9d21")


@dataclass(frozen=True)
class Context:
    """What a worker needs to seal for the records service (picklable)."""

    records_public_key: bytes
    pseudonym_key: bytes
    labels_file: str
    message_resources: int = 250

    @property
    def labels(self) -> LabelTable:
        return load_table(Path(self.labels_file))

    def key_for(self, patient_id: str | None) -> str:
        return crypto.pseudonym(self.pseudonym_key, patient_id) if patient_id else DIRECTORY_KEY


@dataclass
class Outcome:
    """What happened to one Bundle entry or NDJSON line."""

    index: int
    rtype: str | None = None
    rid: str | None = None
    issues: list[tuple[str, str | None, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    def issue_objects(self) -> list[Issue]:
        return [Issue(*t) for t in self.issues]


@dataclass
class Prepared:
    """Sealed messages ready for Kafka and the per-entry outcomes."""

    messages: list[Message] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    resources: int = 0


def ensure_id(resource: dict[str, Any], hospital: str) -> str:
    """A resource without an id gets one derived from its content: resubmitting it is idempotent."""
    rid = resource.get("id")
    if not rid:
        digest = crypto.sha256_hex(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS))
        rid = resource["id"] = str(uuid.uuid5(_ID_NAMESPACE, f"{hospital}|{digest}"))
    return str(rid)


def seal(ctx: Context, *, submission_id: str, hospital: str, kind: str, key: str,
         resources: list[dict[str, Any]], patients: list[str | None]) -> Message:
    """One sealed envelope (docs/architecture.md §3): only routing metadata in the clear."""
    table = ctx.labels
    payload = orjson.dumps({"resources": resources, "labels": [table.labels_for(r) for r in resources],
                            "patients": patients})
    sealed = crypto.seal(payload, ctx.records_public_key, envelope_aad(submission_id, hospital, key))
    env = IngestEnvelope(submission_id=submission_id, hospital=hospital, kind=kind,  # type: ignore[arg-type]
                         sealed=crypto.b64e(sealed), received_at=rfc3339(utcnow()))
    return Message(INGEST_RESOURCES.name, orjson.dumps(env.model_dump(by_alias=True)), key.encode())


def seal_grouped(ctx: Context, *, submission_id: str, hospital: str,
                 resources: list[dict[str, Any]]) -> list[Message]:
    """Independent resources, grouped by patient, ``message_resources`` at most per message."""
    groups: dict[str, tuple[list[dict[str, Any]], list[str | None]]] = {}
    keys: dict[str | None, str] = {}  # one keyed hash per patient, not per resource
    for res in resources:
        pid = patient_id_of(res)
        key = keys.get(pid)
        if key is None:
            key = keys[pid] = ctx.key_for(pid)
        group = groups.setdefault(key, ([], []))
        group[0].append(res)
        group[1].append(pid)
    out: list[Message] = []
    for n, (key, (items, pids)) in enumerate(groups.items()):
        step = ctx.message_resources
        for k in range(0, len(items), step):
            out.append(seal(ctx, submission_id=f"{submission_id}.{n}.{k // step}", hospital=hospital,
                            kind="resource", key=key, resources=items[k:k + step], patients=pids[k:k + step]))
    return out


def seal_transaction(ctx: Context, *, submission_id: str, hospital: str,
                     resources: list[dict[str, Any]]) -> Message:
    """An atomic transaction: one message, stored by records in one database transaction."""
    patients = [patient_id_of(r) for r in resources]
    first = next((p for p in patients if p), None)
    return seal(ctx, submission_id=submission_id, hospital=hospital, kind="transaction",
                key=ctx.key_for(first), resources=resources, patients=patients)


def check_line(raw: bytes, n: int, hospital: str) -> tuple[dict[str, Any] | None, Outcome]:
    """Parse, validate and normalise one NDJSON line (line numbers start at 1)."""
    out = Outcome(index=n)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        out.issues = [Issue(f"line {n}: malformed JSON: {exc}", f"line {n}", "structure").as_tuple()]
        return None, out
    rtype = doc.get("resourceType") if isinstance(doc, dict) else None
    where = rtype if isinstance(rtype, str) and rtype.isidentifier() else "Resource"
    issues = validate_resource(doc, where)
    if not issues and references.needs_rewrite(raw):
        issues = references.rewrite(doc, where, full_urls=None, ids=None)
    if issues:
        out.rtype = rtype if isinstance(rtype, str) else None
        out.issues = [Issue(f"line {n}: {i.diagnostics}", i.expression, i.code, i.severity).as_tuple()
                      for i in issues]
        return None, out
    out.rtype, out.rid = rtype, ensure_id(doc, hospital)
    return doc, out


def prepare_lines(ctx: Context, hospital: str, submission_id: str, first_line: int,
                  lines: list[bytes]) -> Prepared:
    """A chunk of NDJSON: every valid line sealed, every invalid one reported (runs in a worker)."""
    prepared = Prepared()
    accepted: list[dict[str, Any]] = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        doc, outcome = check_line(raw, first_line + i, hospital)
        prepared.outcomes.append(outcome)
        if doc is not None:
            accepted.append(doc)
    prepared.resources = len(accepted)
    prepared.messages = seal_grouped(ctx, submission_id=f"{submission_id}.{first_line}", hospital=hospital,
                                     resources=accepted)
    return prepared


def validate_entries(docs: list[bytes], wheres: list[str]) -> list[list[tuple[str, str | None, str, str]]]:
    """Validate serialised resources (a worker job for large Bundles)."""
    return [[i.as_tuple() for i in validate_resource(orjson.loads(d), w)] for d, w in zip(docs, wheres, strict=True)]
