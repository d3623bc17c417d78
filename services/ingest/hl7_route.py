"""HL7 v2 in: ``POST /hl7v2`` (and the MLLP listener) take one ER7 message and answer an ACK.

The mapped resources go through the same path as a FHIR transaction
(structure and rules validation, labels, one atomic sealed message, the ingest
AuditEvent). The message control id, scoped to the sending hospital, is the
idempotency key: a resent message is acknowledged again and stored once.
HTTP status follows the ACK: AA 200, AE/AR for content 400, AR because the
broker cannot store it 503 with Retry-After (resend later).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from services.adapters.auth import Caller
from services.adapters.kafka import BrokerUnavailable
from services.adapters.web import CallerDep
from services.contracts import errors
from services.fhir.validation import InvalidSubmission
from services.ingest import bundle as bundles
from services.ingest import hl7v2
from services.ingest.config import IngestSettings
from services.ingest.service import Forbidden, Ingestor, body_digest

HL7_MEDIA = "x-application/hl7-v2+er7"
HL7_TYPES = frozenset({HL7_MEDIA, "application/hl7-v2", "application/hl7-v2+er7", "text/plain"})


def _control_id(text: str) -> str:
    """MSH-10 read without a parser, to answer even an unparseable message."""
    first = text.lstrip("\x0b\r\n ").split("\r")[0].split("\n")[0]
    fields = first.split("|")
    return fields[9] if first.startswith("MSH") and len(fields) > 9 else ""


def hl7_handler(ingestor: Ingestor, settings: IngestSettings
                ) -> Callable[[Caller, bytes], Awaitable[tuple[int, str, dict[str, str]]]]:
    """One message from an authenticated caller -> (HTTP-style status, ACK text, headers)."""

    def answer(status: int, code: str, control_id: str, text: str = "", where: str = "",
               mapped: hl7v2.Mapped | None = None, headers: dict[str, str] | None = None,
               ) -> tuple[int, str, dict[str, str]]:
        ack = hl7v2.ack(code=code, control_id=control_id, text=text, where=where,
                        trigger=mapped.trigger if mapped else "", version=mapped.version if mapped else "2.5",
                        receiver=mapped.sender if mapped else "",
                        receiver_facility=mapped.sender_facility if mapped else "")
        return status, ack, headers or {}

    async def handle(caller: Caller, raw: bytes) -> tuple[int, str, dict[str, str]]:
        text = raw.decode("utf-8", errors="replace")
        mapped: hl7v2.Mapped | None = None
        try:
            await run_in_threadpool(ingestor.authorise, caller)  # before any mapping or validation work
            mapped = hl7v2.to_fhir(text, caller.org, settings.hl7_default_tz)
            entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
                        "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                       for r in mapped.resources]
            parsed = bundles.read_entries({"resourceType": "Bundle", "type": "transaction", "entry": entries},
                                          settings.max_bundle_entries)
            await run_in_threadpool(ingestor.check_bundle, parsed, caller.org)
            key = f"hl7v2|{mapped.sender}|{mapped.sender_facility}|{mapped.control_id}"
            receipt = await run_in_threadpool(ingestor.submit_bundle, caller, parsed, body_digest(raw), key,
                                              "hl7v2")
        except hl7v2.Hl7Error as exc:
            return answer(400, exc.ack, _control_id(text), str(exc), exc.where, mapped)
        except InvalidSubmission as exc:
            issue = exc.issues[0]
            return answer(400, "AE", mapped.control_id if mapped else "", issue.diagnostics,
                          issue.expression or "", mapped)
        except Forbidden as exc:
            return answer(403, "AR", _control_id(text), "write denied: " + ", ".join(exc.reasons), mapped=mapped)
        except BrokerUnavailable:
            return answer(503, "AR", mapped.control_id if mapped else "", "platform cannot store now; resend",
                          mapped=mapped, headers={"Retry-After": str(settings.retry_after_s)})
        return answer(200, "AA", mapped.control_id, f"accepted {receipt.accepted} resources", mapped=mapped,
                      headers={"X-Healthgov-Submission": receipt.submission_id,
                               "X-Healthgov-Event-Id": receipt.event_id})

    return handle


def install_hl7(app: FastAPI, ingestor: Ingestor, settings: IngestSettings,
                body_of: Callable[[Request, Any, frozenset[str]], Awaitable[bytes]]) -> None:
    handle = hl7_handler(ingestor, settings)

    @app.post("/hl7v2")
    async def post_hl7v2(request: Request, caller: CallerDep) -> Response:
        try:
            raw = await body_of(request, caller, HL7_TYPES)
        except errors.HealthgovError as exc:  # refused before the message was read: still an ACK
            ack = hl7v2.ack(code="AR", control_id="", text=exc.message)
            return Response(ack, status_code=exc.status, media_type=HL7_MEDIA, headers=exc.headers)
        status, ack, headers = await handle(caller, raw)
        return Response(ack, status_code=status, media_type=HL7_MEDIA, headers=headers)
