"""From validated resources to sealed Kafka messages: the CPU-bound core of ingest.

Pure functions over bytes and dicts (no I/O), so the worker processes of the
validation pool run them in parallel: parse, validate (structure and rules),
resolve references, assign missing ids, label, group by patient and seal. Only
the sealed bytes travel back to the parent, which sends them to Kafka.

Resources of one patient travel together, up to ``message_resources`` per
message and up to ``MAX_INGEST_MESSAGE_BYTES`` per sealed message: one HPKE
seal and one Kafka record for many resources, all keyed by the patient
pseudonym so that one patient's records stay in order. Packing counts bytes as
well as resources because Synthea's Provenance (one per patient, naming every
resource of the patient) reaches 1.4 MB, and hospitals' DocumentReferences with
embedded documents several MB: 250 of them never fit one message.

A resource above ``MAX_RESOURCE_BYTES`` (compact JSON) cannot travel at all:
it is refused by name with the issue code ``too-costly``, which the routes
answer as 413, never as a broker failure.
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
from services.contracts.topics import INGEST_RESOURCES, MAX_INGEST_MESSAGE_BYTES, MAX_RESOURCE_BYTES
from services.fhir.compartment import patient_id_of
from services.fhir.validation import RECOGNISED_CODE_SYSTEMS, Issue, IssueTuple, check_resource, malformed
from services.ingest import references
from services.ingest.claims import Claim, claim_of
from services.ingest.labels import LabelTable, load_table
from services.ingest.report import DEFAULT_PRIORITY_FIELDS, Tally

_ID_NAMESPACE = uuid.UUID("6f0b1a52-8d0c-4c1e-9a57-3c1f0e3b9d21")
TOO_COSTLY = "too-costly"  # the OperationOutcome issue code of what exceeds a size limit (answered 413)
# The sealed payload's share of a message: base64 makes 4 bytes of 3, and the envelope (ids, hospital,
# timestamps) and the HPKE encapsulation take a few hundred bytes, allowed for generously.
_ENVELOPE_ALLOWANCE = 16 * 1024
PAYLOAD_BUDGET = (MAX_INGEST_MESSAGE_BYTES - _ENVELOPE_ALLOWANCE) * 3 // 4
# Request chunks handed to one validation worker: at most this many bytes of NDJSON, however many lines.
CHUNK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Context:
    """What a worker needs to seal for the records service (picklable)."""

    records_public_key: bytes
    pseudonym_key: bytes
    labels_file: str
    message_resources: int = 250
    strong_systems: frozenset[str] = frozenset()  # national identifier systems (claims.py)
    # Priority fields per resource type, for the completeness the quality report counts (report.py).
    priority: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_PRIORITY_FIELDS))
    code_systems: frozenset[str] = RECOGNISED_CODE_SYSTEMS  # clinical code systems (validation warnings)

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
    issues: list[IssueTuple] = field(default_factory=list)
    warnings: list[IssueTuple] = field(default_factory=list)  # an accepted resource's warnings

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def status(self) -> int:
        """The HTTP status of this entry's answer: 413 when it is too large to store, else 400 (201 if ok)."""
        if self.ok:
            return 201
        return 413 if any(i[2] == TOO_COSTLY for i in self.issues) else 400

    def issue_objects(self) -> list[Issue]:
        return [Issue(*t) for t in self.issues]

    def warning_objects(self) -> list[Issue]:
        return [Issue(*t) for t in self.warnings]


@dataclass
class Prepared:
    """Sealed messages ready for Kafka and the per-entry outcomes."""

    messages: list[Message] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    resources: int = 0
    claims: list[Claim] = field(default_factory=list)  # one per accepted line, settled by the parent
    tally: Tally = field(default_factory=Tally)  # what the submission's quality report counts (report.py)


def ensure_id(resource: dict[str, Any], hospital: str) -> str:
    """A resource without an id gets one derived from its content: resubmitting it is idempotent."""
    rid = resource.get("id")
    if not rid:
        digest = crypto.sha256_hex(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS))
        rid = resource["id"] = str(uuid.uuid5(_ID_NAMESPACE, f"{hospital}|{digest}"))
    return str(rid)


def too_large(where: str, rtype: Any, size: int) -> Issue:
    """The permanent, named error of a resource that no message can carry."""
    what = f"{rtype} " if isinstance(rtype, str) and rtype.isidentifier() else ""
    return Issue(f"{where}: the {what}resource is {size} bytes of JSON; one resource may be at most "
                 f"{MAX_RESOURCE_BYTES} bytes", where, TOO_COSTLY)


MAX_WRITTEN_DEPTH = 255  # orjson writes JSON at most this deep; no FHIR resource comes near it


def too_deep(where: str) -> Issue:
    """A resource nested deeper than the platform writes JSON: refused by name, never a crash later."""
    return Issue(f"{where}: elements are nested too deeply", where, TOO_COSTLY)


def writable(doc: Any, raw: bytes) -> bool:
    """Whether ``doc`` can be written back as JSON (a line with few brackets cannot be too deep)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_WRITTEN_DEPTH:
        return True
    try:
        orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return False
    return True


def oversize(resource: Any) -> int | None:
    """The compact JSON size of a resource above ``MAX_RESOURCE_BYTES``, else None."""
    size = len(orjson.dumps(resource))
    return size if size > MAX_RESOURCE_BYTES else None


@dataclass
class _Item:
    """One resource ready to seal: its JSON, once, and what travels beside it."""

    json: bytes
    labels: list[str]
    patient: str | None

    @property
    def cost(self) -> int:
        """Its bytes in the payload (JSON, labels, patient, separators)."""
        return len(self.json) + sum(len(x) + 3 for x in self.labels) + len(self.patient or "null") + 8


def _seal_items(ctx: Context, *, submission_id: str, hospital: str, kind: str, key: str,
                items: list[_Item]) -> Message:
    """One sealed envelope (docs/architecture.md §3): only routing metadata in the clear.

    The payload is ``{"resources": [...], "labels": [...], "patients": [...]}``,
    written from each resource's JSON made once (the same bytes orjson writes
    for the whole object).
    """
    payload = b"".join((b'{"resources":[', b",".join(i.json for i in items), b'],"labels":',
                        orjson.dumps([i.labels for i in items]), b',"patients":',
                        orjson.dumps([i.patient for i in items]), b"}"))
    sealed = crypto.seal(payload, ctx.records_public_key, envelope_aad(submission_id, hospital, key))
    env = IngestEnvelope(submission_id=submission_id, hospital=hospital, kind=kind,  # type: ignore[arg-type]
                         sealed=crypto.b64e(sealed), received_at=rfc3339(utcnow()))
    return Message(INGEST_RESOURCES.name, orjson.dumps(env.model_dump(by_alias=True)), key.encode())


def seal(ctx: Context, *, submission_id: str, hospital: str, kind: str, key: str,
         resources: list[dict[str, Any]], patients: list[str | None]) -> Message:
    """One sealed envelope of exactly these lists, whatever their size (the caller packs)."""
    table = ctx.labels
    payload = orjson.dumps({"resources": resources, "labels": [table.labels_for(r) for r in resources],
                            "patients": patients})
    sealed = crypto.seal(payload, ctx.records_public_key, envelope_aad(submission_id, hospital, key))
    env = IngestEnvelope(submission_id=submission_id, hospital=hospital, kind=kind,  # type: ignore[arg-type]
                         sealed=crypto.b64e(sealed), received_at=rfc3339(utcnow()))
    return Message(INGEST_RESOURCES.name, orjson.dumps(env.model_dump(by_alias=True)), key.encode())


def pack(items: list[_Item], max_resources: int, max_bytes: int = PAYLOAD_BUDGET) -> list[list[_Item]]:
    """Consecutive runs of ``items``, each within both limits (an item alone over ``max_bytes`` goes alone)."""
    out: list[list[_Item]] = []
    run: list[_Item] = []
    size = 0
    for item in items:
        cost = item.cost
        if run and (len(run) >= max_resources or size + cost > max_bytes):
            out.append(run)
            run, size = [], 0
        run.append(item)
        size += cost
    if run:
        out.append(run)
    return out


def seal_grouped(ctx: Context, *, submission_id: str, hospital: str,
                 resources: list[dict[str, Any]], labels: list[list[str]] | None = None) -> list[Message]:
    """Independent resources, grouped by patient, packed within the message limits (resources and bytes).

    ``labels``: each resource's sensitivity labels when the caller has them already (else the table's walk).
    """
    table = ctx.labels
    groups: dict[str, list[_Item]] = {}
    keys: dict[str | None, str] = {}  # one keyed hash per patient, not per resource
    for n, res in enumerate(resources):
        pid = patient_id_of(res)
        key = keys.get(pid)
        if key is None:
            key = keys[pid] = ctx.key_for(pid)
        found = labels[n] if labels is not None else table.labels_for(res)
        groups.setdefault(key, []).append(_Item(orjson.dumps(res), found, pid))
    out: list[Message] = []
    for n, (key, items) in enumerate(groups.items()):
        for k, run in enumerate(pack(items, ctx.message_resources)):
            out.append(_seal_items(ctx, submission_id=f"{submission_id}.{n}.{k}", hospital=hospital,
                                   kind="resource", key=key, items=run))
    return out


def seal_transaction(ctx: Context, *, submission_id: str, hospital: str,
                     resources: list[dict[str, Any]]) -> Message:
    """An atomic transaction: one message, stored by records in one database transaction."""
    patients = [patient_id_of(r) for r in resources]
    first = next((p for p in patients if p), None)
    return seal(ctx, submission_id=submission_id, hospital=hospital, kind="transaction",
                key=ctx.key_for(first), resources=resources, patients=patients)


def _on_line(n: int, issues: list[Issue]) -> list[IssueTuple]:
    return [Issue(f"line {n}: {i.diagnostics}", i.expression, i.code, i.severity, i.rule).as_tuple() for i in issues]


def check_line(raw: bytes, n: int, hospital: str, systems: frozenset[str] = RECOGNISED_CODE_SYSTEMS,
               ) -> tuple[dict[str, Any] | None, Outcome]:
    """Parse, validate and normalise one NDJSON line (line numbers start at 1)."""
    doc, out, _ = _check_line(raw, n, hospital, systems)
    return doc, out


def _check_line(raw: bytes, n: int, hospital: str, systems: frozenset[str],
                ) -> tuple[dict[str, Any] | None, Outcome, list[dict[str, Any]]]:
    """``check_line``, and the objects holding a code that validation found (for the labels)."""
    out = Outcome(index=n)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        out.issues = [Issue(f"line {n}: {malformed(exc)}", f"line {n}", "structure").as_tuple()]
        return None, out, []
    rtype = doc.get("resourceType") if isinstance(doc, dict) else None
    if not writable(doc, raw):
        out.rtype = rtype if isinstance(rtype, str) else None
        out.issues = [too_deep(f"line {n}").as_tuple()]
        return None, out, []
    # A line is never shorter than its compact JSON, so only long lines need measuring.
    if len(raw) > MAX_RESOURCE_BYTES and (size := oversize(doc)):
        out.rtype = rtype if isinstance(rtype, str) else None
        out.issues = [too_large(f"line {n}", rtype, size).as_tuple()]
        return None, out, []
    where = rtype if isinstance(rtype, str) and rtype.isidentifier() else "Resource"
    verdict = check_resource(doc, where, systems)
    issues = verdict.errors
    if not issues and references.needs_rewrite(raw):
        issues = references.rewrite_held(verdict.holders, full_urls=None, ids=None)
    if issues:
        out.rtype = rtype if isinstance(rtype, str) else None
        out.issues = _on_line(n, issues)
        return None, out, []
    out.warnings = _on_line(n, verdict.warnings)
    out.rtype, out.rid = rtype, ensure_id(doc, hospital)
    return doc, out, verdict.coded


def chunk_ranges(lines: list[bytes], max_lines: int, max_bytes: int = CHUNK_BYTES) -> list[tuple[int, int]]:
    """``(start, end)`` slices of ``lines`` with at most ``max_lines`` lines and about ``max_bytes`` bytes each.

    Bounding the bytes as well as the lines bounds a validation worker's
    memory: a thousand lines of large resources (documents, Provenance) would
    otherwise be hundreds of MB parsed at once in one worker.
    """
    out: list[tuple[int, int]] = []
    start, size = 0, 0
    for i, line in enumerate(lines):
        if i > start and (i - start >= max_lines or size + len(line) > max_bytes):
            out.append((start, i))
            start, size = i, 0
        size += len(line) + 1
    if start < len(lines):
        out.append((start, len(lines)))
    return out


def claims_of(ctx: Context, resources: list[tuple[int, dict[str, Any]]]) -> list[Claim]:
    """The ownership and registration claim of each (index, resource) (see ``claims.py``)."""
    keys: dict[str | None, str] = {}
    out: list[Claim] = []
    for index, res in resources:
        pid = patient_id_of(res)
        if pid not in keys:
            keys[pid] = ctx.key_for(pid)
        out.append(claim_of(res, index, key=ctx.pseudonym_key, patient_key=keys[pid], systems=ctx.strong_systems))
    return out


def prepare_lines(ctx: Context, hospital: str, submission_id: str, first_line: int,
                  lines: list[bytes], refused: dict[int, IssueTuple] | None = None,
                  ) -> Prepared:
    """A chunk of NDJSON: every valid line sealed, every invalid one reported (runs in a worker).

    ``refused``: lines the claim registry refused (line number → the issue), left out.
    """
    prepared = Prepared()
    accepted: list[tuple[int, dict[str, Any]]] = []
    labels: list[list[str]] = []
    table = ctx.labels
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        n = first_line + i
        if refused and n in refused:
            prepared.outcomes.append(Outcome(index=n, issues=[refused[n]]))
            prepared.tally.rejected(None, [(refused[n][2], None)])
            continue
        doc, outcome, coded = _check_line(raw, n, hospital, ctx.code_systems)
        prepared.outcomes.append(outcome)
        if doc is not None:
            accepted.append((n, doc))
            labels.append(table.labels_of(doc, coded))
            prepared.tally.observe(doc, warnings=[w[4] for w in outcome.warnings], priority=ctx.priority)
        else:
            prepared.tally.rejected(outcome.rtype, [(i[2], i[1]) for i in outcome.issues])
    prepared.claims = claims_of(ctx, accepted)
    prepared.resources = len(accepted)
    prepared.messages = seal_grouped(ctx, submission_id=f"{submission_id}.{first_line}", hospital=hospital,
                                     resources=[doc for _, doc in accepted], labels=labels)
    return prepared


def validate_entries(docs: list[bytes], wheres: list[str], systems: frozenset[str] = RECOGNISED_CODE_SYSTEMS,
                     ) -> list[tuple[list[IssueTuple], list[IssueTuple]]]:
    """The verdicts on serialised resources, as (errors, warnings) tuples (a worker job for large Bundles)."""
    out = []
    for d, w in zip(docs, wheres, strict=True):
        verdict = check_resource(orjson.loads(d), w, systems)
        out.append(([i.as_tuple() for i in verdict.errors], [i.as_tuple() for i in verdict.warnings]))
    return out
