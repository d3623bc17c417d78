"""Ingest use cases: authorise, validate, seal and publish; account for every submission.

Nothing is acknowledged before Kafka has acknowledged every message
(acks=all). Each accepted submission yields one AuditEvent of kind ``ingest``
(hospital, counts, SHA-256 of the bytes the hospital sent), published with the
data, so regulators can see what each hospital sent.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import uuid6

from services.adapters import crypto
from services.adapters.audit_log import AuditLog, audit_message
from services.adapters.auth import Caller
from services.adapters.kafka import BrokerUnavailable, Message, MessageTooLarge, Producer
from services.adapters.policy import PolicyClient
from services.contracts import errors
from services.contracts.events import Accessor, AuditDecision, AuditEvent, ResourceRef, rfc3339, utcnow
from services.contracts.policy import PolicyInput, PolicyResource
from services.contracts.topics import MAX_INGEST_MESSAGE_BYTES, QUALITY_REPORTS
from services.fhir.validation import InvalidSubmission, Issue, Verdict, check_resource
from services.ingest import bundle as bundles
from services.ingest.claims import ClaimRegistry, Refusals
from services.ingest.idempotency import Claim, Idempotency, Replay
from services.ingest.prepare import (
    TOO_COSTLY,
    Context,
    Outcome,
    Prepared,
    chunk_ranges,
    claims_of,
    oversize,
    prepare_lines,
    seal_grouped,
    seal_transaction,
    too_deep,
    too_large,
    validate_entries,
)
from services.ingest.report import Tally, build_report, count_report
from services.ingest.validation import Pool

__all__ = ["Forbidden", "Ingestor", "Receipt"]
log = logging.getLogger(__name__)
# A good entry of a transaction refused for another entry's fault: not stored, counted as refused.
WITH_TRANSACTION = "refused-with-transaction"


def _status(issues: list[Issue]) -> int:
    """413 when something cannot be stored for its size (retrying cannot help), else 400."""
    return 413 if any(i.code == TOO_COSTLY for i in issues) else 400


def _too_large_message(exc: MessageTooLarge) -> InvalidSubmission:
    return InvalidSubmission([Issue(f"the submission cannot be stored: {exc}", "body", TOO_COSTLY)], status=413)


class Forbidden(errors.Forbidden):
    """OPA denied the write; ``reasons`` say why."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("write denied: " + ", ".join(reasons), reasons=reasons)


POLICY_UNAVAILABLE = "policy_engine_unavailable"


class PolicyUnavailable(errors.Unavailable):
    """OPA could not be asked whether this write is allowed: nothing stored, retry later (503, Retry-After)."""

    def __init__(self) -> None:
        super().__init__("the policy engine is unavailable: nothing was stored, try again shortly",
                         reasons=[POLICY_UNAVAILABLE])


class Refused(InvalidSubmission):
    """Resources the hospital may not write (another's resource, an unregistered patient): 403, audited."""

    def __init__(self, issues: list[Issue], event_id: str) -> None:
        super().__init__(issues, status=403)
        self.code = "forbidden"
        self.event_id = event_id
        self.headers[errors.EVENT_HEADER] = event_id


def refusal_event(*, caller: Caller, submission_id: str, refusals: Mapping[str, int]) -> AuditEvent:
    """The accountable record of writes refused by ownership or registration (no resource ids: digests only)."""
    return AuditEvent(
        kind="denial", accessor=caller.accessor(),
        purpose="TREAT", request_id=submission_id,
        decision=AuditDecision(allow=False, reasons=sorted(refusals)),
        details={"action": "write", "submission": submission_id, "refused": dict(sorted(refusals.items()))})


@dataclass
class Receipt:
    """What was accepted, under which submission and audit event."""

    submission_id: str
    event_id: str
    counts: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    replay: bool = False

    @property
    def accepted(self) -> int:
        return sum(self.counts.values())


def ingest_event(*, caller: Caller | Accessor, submission_id: str, kind: str, counts: dict[str, int],
                 rejected: int, body_digest: str, event_id: str | None = None,
                 transport: str = "fhir", occurred_at: str | None = None) -> AuditEvent:
    """The accountable record of one accepted submission (docs/architecture.md §6).

    A keyed submission passes its claim's ``event_id`` and ``occurred_at``, so
    every attempt at it publishes the same event, which the log appends once.
    """
    accessor = caller if isinstance(caller, Accessor) else caller.accessor()
    extra: dict[str, str] = {"event_id": event_id} if event_id else {}
    if occurred_at:
        extra["occurred_at"] = occurred_at
    return AuditEvent(
        kind="ingest", accessor=accessor, purpose="TREAT",
        resources=[ResourceRef(type=t, id=str(n)) for t, n in sorted(counts.items())],
        request_id=submission_id, data_digest=body_digest,
        details={"submission": submission_id, "kind": kind, "transport": transport,
                 "accepted": sum(counts.values()), "rejected": rejected, "counts": dict(sorted(counts.items()))},
        **extra,
    )


@dataclass
class Ingestor:
    """The use cases behind every ingest route (FHIR and HL7 v2 alike)."""

    ctx: Context
    producer: Producer
    policy: PolicyClient
    pool: Pool
    idempotency: Idempotency
    claims: ClaimRegistry
    pool_threshold: int = 200
    chunk_lines: int = 1_000

    def authorise(self, caller: Caller) -> None:
        """OPA decides whether this caller may write (only hospitals may, docs/architecture.md §5)."""
        decision = self.policy.decide(PolicyInput(
            subject=caller.subject(),
            action="write", purpose="TREAT",
            resource=PolicyResource(patient=None, type="Bundle", hospital=caller.org),
            now=rfc3339(utcnow()),
        ))
        if not decision.allow:
            if POLICY_UNAVAILABLE in decision.reasons:
                # Still a refusal (fail closed), but not the hospital's fault: a 403 would make a
                # standards-following sender give up and the data would never arrive. It must retry.
                raise PolicyUnavailable()
            raise Forbidden(decision.reasons)

    # --- Bundles and single resources ------------------------------------------

    def check_bundle(self, bundle: bundles.ParsedBundle, hospital: str) -> None:
        """Refuse oversized entries by name, validate the others (in the pool when many), resolve references."""
        with_resource: list[bundles.Entry] = []
        for e in bundle.entries:
            if e.resource is None:
                continue
            try:
                size = oversize(e.resource)
            except orjson.JSONEncodeError:  # deeper than JSON is written: it could never be stored
                e.issues.append(too_deep(f"{e.where}.resource"))
                continue
            if size is not None:
                e.issues.append(too_large(f"{e.where}.resource", e.resource.get("resourceType"), size))
            else:
                with_resource.append(e)
        if len(with_resource) >= self.pool_threshold:
            step = max(50, len(with_resource) // (2 * max(1, self.pool.workers)))
            jobs = [([orjson.dumps(e.resource) for e in with_resource[i:i + step]],
                     [f"{e.where}.resource" for e in with_resource[i:i + step]], self.ctx.code_systems)
                    for i in range(0, len(with_resource), step)]
            found = [Verdict([Issue(*t) for t in errors], [Issue(*t) for t in warnings])
                     for part in self.pool.map_ordered(validate_entries, jobs) for errors, warnings in part]
        else:
            found = [check_resource(e.resource, f"{e.where}.resource", systems=self.ctx.code_systems)
                     for e in with_resource]
        for entry, verdict in zip(with_resource, found, strict=True):
            entry.issues.extend(verdict.errors)
            entry.warnings.extend(verdict.warnings)
        bundles.resolve(bundle, hospital)
        try:
            bundles.require_all_good(bundle)
        except InvalidSubmission as exc:
            exc.status = _status(exc.issues)
            self.report_refused(hospital, str(uuid6.uuid7()), self.bundle_tally(bundle, refused=True))
            raise

    def submit_bundle(self, caller: Caller, bundle: bundles.ParsedBundle, body_digest: str,
                      key: str | None, transport: str = "fhir") -> Receipt:
        """Publish a checked Bundle: a transaction as one atomic message, a batch per patient."""
        self.authorise(caller)
        self.settle_bundle(caller, bundle)
        claim = self.idempotency.begin(caller.org, key, body_digest)
        if isinstance(claim, Replay):
            return Receipt(claim.submission_id, claim.event_id, _counts(bundle), len(bundle.entries) - len(bundle.good),
                           replay=True)
        sid = claim.submission_id if claim is not None else str(uuid6.uuid7())
        resources = [e.resource for e in bundle.good if e.resource is not None]
        try:
            if bundle.kind == "transaction":
                message = seal_transaction(self.ctx, submission_id=sid, hospital=caller.org, resources=resources)
                if len(message.value) > MAX_INGEST_MESSAGE_BYTES:  # one message, so records stores it in one commit
                    raise InvalidSubmission([Issue(
                        f"Bundle: the transaction is {len(message.value)} bytes sealed; a transaction is stored "
                        f"atomically and may be at most {MAX_INGEST_MESSAGE_BYTES} bytes sealed (about "
                        f"{MAX_INGEST_MESSAGE_BYTES * 3 // 4} bytes of JSON): split it or send a batch",
                        "Bundle", TOO_COSTLY)], status=413)
                messages = [message]
            else:
                messages = seal_grouped(self.ctx, submission_id=sid, hospital=caller.org, resources=resources)
            counts = _counts(bundle)
            event = ingest_event(caller=caller, submission_id=sid, kind=bundle.kind, counts=counts,
                                 rejected=len(bundle.entries) - len(bundle.good), body_digest=body_digest,
                                 transport=transport, **_planned(claim))
            report = self.report(caller.org, sid, self.bundle_tally(bundle), accepted=True, transport=transport)
            self.producer.send_all([*messages, audit_message(event), report])
        except MessageTooLarge as exc:  # packing keeps within the limits; a refusal is still permanent
            if claim is not None:
                self.idempotency.release(claim)
            raise _too_large_message(exc) from exc
        except BaseException:
            if claim is not None:
                self.idempotency.release(claim)
            raise
        if claim is not None:
            self.idempotency.done(claim, sid, event.event_id)
        return Receipt(sid, event.event_id, counts, len(bundle.entries) - len(bundle.good))

    def settle_bundle(self, caller: Caller, bundle: bundles.ParsedBundle) -> None:
        """Every entry's ownership and patient settled; any refusal refuses the Bundle (403, audited)."""
        good = [e for e in bundle.good if e.resource is not None]
        refused = self.claims.settle(caller.org, claims_of(self.ctx, [(e.index, e.resource) for e in good]),
                                     all_or_nothing=True)
        if refused:
            where = {e.index: f"{e.where}.resource" for e in good}
            tally = Tally()
            for e in good:
                tally.rejected(str((e.resource or {}).get("resourceType")),
                               [("forbidden", None) if e.index in refused.reasons else (WITH_TRANSACTION, None)])
            self.report_refused(caller.org, str(uuid6.uuid7()), tally)
            raise self._refused(caller, str(uuid6.uuid7()), refused,
                                [refused.issue(i, where[i]) for i in sorted(refused.reasons)])

    def _refused(self, caller: Caller, submission_id: str, refused: Refusals, issues: list[Issue]) -> Refused:
        event = refusal_event(caller=caller, submission_id=submission_id, refusals=refused.counts())
        return Refused(issues, AuditLog(self.producer).publish(event))

    def settle_chunk(self, caller: Caller, args: tuple[Any, ...], prepared: Prepared, refusals: Counter[str],
                     ) -> Prepared:
        """Settle a prepared NDJSON chunk's claims; refused lines are reported and the chunk sealed without them."""
        refused = self.claims.settle(caller.org, prepared.claims)
        if not refused:
            return prepared
        refusals.update(refused.counts())
        issues = {n: refused.issue(n, f"line {n}").as_tuple() for n in refused.reasons}
        return prepare_lines(*args, refused=issues)

    # --- NDJSON -------------------------------------------------------------------

    def chunks(self, caller: Caller, lines: list[bytes], submission_id: str, first: int = 1,
               ) -> list[tuple[Any, ...]]:
        return [(self.ctx, caller.org, submission_id, first + start, lines[start:end])
                for start, end in chunk_ranges(lines, self.chunk_lines)]

    def submit_ndjson(self, caller: Caller, lines: list[bytes], body_digest: str,
                      key: str | None) -> tuple[Receipt, list[Outcome]]:
        """Every valid line stored, every invalid one reported; nothing acknowledged before Kafka."""
        self.authorise(caller)
        claim = self.idempotency.begin(caller.org, key, body_digest)
        replay = isinstance(claim, Replay)
        sid = claim.submission_id if claim is not None else str(uuid6.uuid7())
        outcomes: list[Outcome] = []
        event_box: list[AuditEvent] = []
        refusals: Counter[str] = Counter()
        inline = len(lines) < self.pool_threshold
        chunks = self.chunks(caller, lines, sid)
        tally = Tally()

        def batches() -> Iterator[list[Message]]:
            for args, prepared in zip(chunks, self.pool.map_ordered(prepare_lines, chunks, inline=inline),
                                      strict=True):
                prepared = self.settle_chunk(caller, args, prepared, refusals)
                outcomes.extend(prepared.outcomes)
                tally.merge(prepared.tally)
                if not replay:
                    yield prepared.messages
            counts = _outcome_counts(outcomes)
            if counts and not replay:
                event = ingest_event(caller=caller, submission_id=sid, kind="ndjson", counts=counts,
                                     rejected=sum(1 for o in outcomes if not o.ok), body_digest=body_digest,
                                     **_planned(claim))
                event_box.append(event)
                denial = [audit_message(refusal_event(caller=caller, submission_id=sid, refusals=refusals))]
                report = self.report(caller.org, sid, tally, accepted=True, transport="ndjson")
                yield [audit_message(event), *(denial if refusals else []), report]

        try:
            self.producer.send_stream(batches())
        except BaseException as exc:
            if claim is not None and not replay:
                self.idempotency.release(claim)  # type: ignore[arg-type]
            if isinstance(exc, MessageTooLarge):
                raise _too_large_message(exc) from exc
            raise
        counts = _outcome_counts(outcomes)
        rejected = sum(1 for o in outcomes if not o.ok)
        if not counts:
            if claim is not None and not replay:
                self.idempotency.release(claim)  # type: ignore[arg-type]
            issues = [i for o in outcomes for i in o.issue_objects()]
            if not replay:
                self.report_refused(caller.org, sid, tally, transport="ndjson")
            if refusals:  # nothing stored, and some of it refused: the refusal is the answer, audited
                event = refusal_event(caller=caller, submission_id=sid, refusals=dict(refusals))
                raise Refused(issues, AuditLog(self.producer).publish(event))
            raise InvalidSubmission(issues or [Issue("no resources in the request", "body", "required")],
                                    status=_status(issues))
        if isinstance(claim, Replay):
            return Receipt(claim.submission_id, claim.event_id, counts, rejected, replay=True), outcomes
        event_id = event_box[0].event_id
        if claim is not None:
            self.idempotency.done(claim, sid, event_id)
        return Receipt(sid, event_id, counts, rejected), outcomes


    # --- the quality report (report.py) -----------------------------------------------

    def bundle_tally(self, bundle: bundles.ParsedBundle, *, refused: bool = False) -> Tally:
        """A Bundle's counts: entries with issues rejected by their codes, the others observed."""
        tally = Tally()
        for e in bundle.entries:
            if e.issues:
                tally.rejected((e.resource or {}).get("resourceType"), [(i.code, i.expression) for i in e.issues])
            elif e.resource is not None:
                if refused:  # a transaction refused whole: nothing of it is stored
                    tally.rejected(e.resource.get("resourceType"), [(WITH_TRANSACTION, None)])
                else:
                    tally.observe(e.resource, warnings=[w.rule for w in e.warnings], priority=self.ctx.priority)
        return tally

    def report(self, hospital: str, submission_id: str, tally: Tally, *, accepted: bool,
               transport: str = "fhir", report_id: str | None = None) -> Message:
        """The submission's quality report as a message on ``ingest.quality.v1`` (keyed by hospital).

        ``report_id``: a stable id where the same part may be sent again (an import job's chunk), so the
        oversight consumer counts it once.
        """
        report = build_report(hospital=hospital, submission_id=submission_id, transport=transport,
                              accepted=accepted, tally=tally)
        count_report(report)
        if report_id is not None:
            report.report_id = report_id
        return Message(QUALITY_REPORTS.name, report.model_dump_json(by_alias=True).encode(), hospital.encode())

    def report_refused(self, hospital: str, submission_id: str, tally: Tally, transport: str = "fhir") -> None:
        """The report of a refused submission, sent on its own.

        Best effort: the refusal is the hospital's answer whatever the broker
        says, and nothing was stored that the report would have to match.
        """
        if not tally.types:
            return
        try:
            self.producer.send(self.report(hospital, submission_id, tally, accepted=False, transport=transport))
        except (BrokerUnavailable, MessageTooLarge) as exc:
            log.warning("quality report of a refused submission not sent: %r", exc)


def _planned(claim: Claim | Replay | None) -> dict[str, str]:
    """The event id and time a keyed submission publishes under on every attempt (none without a key)."""
    if isinstance(claim, Claim) and claim.event_id:
        return {"event_id": claim.event_id, "occurred_at": claim.occurred_at}
    return {}


def _counts(bundle: bundles.ParsedBundle) -> dict[str, int]:
    return dict(Counter(str((e.resource or {}).get("resourceType")) for e in bundle.good))


def _outcome_counts(outcomes: list[Outcome]) -> dict[str, int]:
    return dict(Counter(str(o.rtype) for o in outcomes if o.ok))


def body_digest(body: bytes) -> str:
    """SHA-256 of exactly what the hospital sent: what the ingest AuditEvent commits to."""
    return crypto.sha256_hex(body)
