"""Telemetry: Prometheus metrics, OpenTelemetry traces and JSON logs (docs/architecture.md §17).

One module, so that what an operator sees is the same in every service and so
that nothing here can carry PHI by accident:

- **Metrics** (prometheus-client) are labelled only by closed sets: service,
  method, the route's *template* (``/fhir/Patient/{pid}``, never the path, which
  holds record ids), status, topic, consumer group, partition, OPA decision
  path and outcome, FHIR issue codes. No organisation, patient, pseudonym or
  resource id is ever a label. ``/metrics`` answers loopback callers, or any
  caller presenting ``HEALTHGOV_METRICS_TOKEN`` as a bearer token when it is
  set (a Kubernetes scrape comes from another address): request volumes per
  route are operational facts an outsider has no business reading.
- **Traces** (OpenTelemetry SDK, W3C trace context) are off unless
  ``HEALTHGOV_TRACE_EXPORTER`` names an exporter (``file``: JSON lines in
  ``<state>/traces/<service>.jsonl``; ``otlp``: the OTLP/HTTP exporter, when
  its package is installed). The HTTP layer continues a caller's
  ``traceparent``; the Kafka producer writes the current context into each
  message's headers, and the consumer loop records one span per traced message
  as a child of the producer's span, so one submission is one trace across
  ingest, records and audit. Spans carry route templates, topics and offsets,
  never paths or payloads. Off, every hook is one ``is None`` test.
- **Logs** are JSON lines on stderr with the service, the request id and the
  trace id. A request id comes from ``X-Request-ID`` when it is a short token
  (at most 64 characters of ``[A-Za-z0-9._-]``), else one is made; it is echoed
  back, and records' audit events carry it (``request_id``), so an operator
  goes from a log line to the audit entry. Exception messages are left out of
  logged tracebacks (type and frames only): a driver's or validator's message
  can quote the data it choked on.
"""

from __future__ import annotations

import contextlib
import contextvars
import hmac
import ipaddress
import logging
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.contracts import errors

log = logging.getLogger(__name__)
access_log = logging.getLogger("healthgov.access")

# --- settings -------------------------------------------------------------------------------------------------


class TelemetrySettings(BaseSettings):
    """``HEALTHGOV_*`` settings of this module (read here, so the services' settings need not know them)."""

    model_config = SettingsConfigDict(env_prefix="HEALTHGOV_", extra="ignore")

    state_dir: Path = Path(__file__).resolve().parents[2] / ".state"
    metrics_token: SecretStr | None = None
    trace_exporter: Literal["none", "file", "otlp"] = "none"
    trace_sample_ratio: float = 1.0  # of new traces; a caller's sampled traceparent is always followed
    trace_dir: Path | None = None
    log_format: Literal["json", "text"] = "json"
    access_log: bool = False  # one JSON line per request (route template, status, duration, request id)


# --- metrics --------------------------------------------------------------------------------------------------

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED = "<unmatched>"

HTTP_REQUESTS = Counter("healthgov_http_requests", "HTTP requests answered, by route template and status",
                        ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram("healthgov_http_request_duration_seconds", "Time to answer an HTTP request",
                         ["service", "method", "route"], buckets=LATENCY_BUCKETS)
KAFKA_PRODUCED = Counter("healthgov_kafka_produced_messages", "Messages the broker acknowledged", ["topic"])
KAFKA_SEND_LATENCY = Histogram("healthgov_kafka_send_duration_seconds",
                               "Time until the broker acknowledged a send (transactional: committed)",
                               ["mode"], buckets=LATENCY_BUCKETS)
KAFKA_SEND_FAILURES = Counter("healthgov_kafka_send_failures", "Sends that were not acknowledged", ["mode"])
KAFKA_CONSUMED = Counter("healthgov_kafka_consumed_messages", "Messages handled and committed",
                         ["topic", "group"])
KAFKA_HANDLE_LATENCY = Histogram("healthgov_kafka_batch_duration_seconds", "Time to handle one polled batch",
                                 ["topic", "group"], buckets=LATENCY_BUCKETS)
KAFKA_LAG = Gauge("healthgov_kafka_consumer_lag", "Messages behind the partition's high watermark",
                  ["topic", "group", "partition"], multiprocess_mode="max")
KAFKA_CONSUMER_UP = Gauge("healthgov_kafka_consumer_up", "1 while the consumer loop reaches the broker",
                          ["topic", "group"], multiprocess_mode="max")
AUDIT_APPENDED = Counter("healthgov_audit_appended_entries", "Entries appended to the Merkle log")
AUDIT_TREE_SIZE = Gauge("healthgov_audit_tree_size", "Entries in the Merkle log", multiprocess_mode="max")
POLICY_LATENCY = Histogram("healthgov_policy_decision_duration_seconds", "Time OPA took to answer",
                           ["path"], buckets=LATENCY_BUCKETS)
POLICY_DECISIONS = Counter("healthgov_policy_decisions", "Policy decisions by outcome (fail_closed: no answer)",
                           ["path", "outcome"])
INGEST_RESOURCES = Counter("healthgov_ingest_resources", "Resources received, by transport and outcome",
                           ["transport", "outcome"])
INGEST_REJECTIONS = Counter("healthgov_ingest_rejections", "Reasons of refused resources (FHIR issue code)",
                            ["transport", "reason"])
POOL_WORKERS = Gauge("healthgov_validation_pool_workers", "Validation worker processes",
                     multiprocess_mode="livesum")
POOL_TASKS = Counter("healthgov_validation_pool_tasks", "Chunks handed to the validation workers")
POOL_IN_FLIGHT = Gauge("healthgov_validation_pool_in_flight", "Chunks submitted and not yet collected",
                       multiprocess_mode="livesum")
POOL_WAIT = Histogram("healthgov_validation_pool_wait_seconds",
                      "Time the request waited for a chunk's result after asking for it", buckets=LATENCY_BUCKETS)

# FHIR issue-type codes (http://hl7.org/fhir/issue-type): a refusal's reason is one of them, nothing else.
_ISSUE_CODES = frozenset({
    "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown", "expired",
    "forbidden", "suppressed", "processing", "not-supported", "duplicate", "multiple-matches", "not-found",
    "deleted", "too-long", "code-invalid", "extension", "too-costly", "business-rule", "conflict", "transient",
    "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled", "informational",
})


def issue_code(reason: str) -> str:
    """The issue code of a quality report's reason (``invalid Observation.status``): a closed set, or ``other``."""
    code = reason.split(" ", 1)[0]
    return code if code in _ISSUE_CODES else "other"


def count_ingest(transport: str, accepted: int, rejected: int, reasons: dict[str, int]) -> None:
    """One submission's resources and its refusals' reasons (issue codes only: never the element or value)."""
    transport = transport if transport in ("fhir", "ndjson", "hl7v2", "import") else "other"
    if accepted:
        INGEST_RESOURCES.labels(transport, "accepted").inc(accepted)
    if rejected:
        INGEST_RESOURCES.labels(transport, "rejected").inc(rejected)
    for reason, n in reasons.items():
        INGEST_REJECTIONS.labels(transport, issue_code(reason)).inc(n)


def metrics_registry() -> CollectorRegistry:
    """The registry to expose: every process's values under ``PROMETHEUS_MULTIPROC_DIR`` (forked workers)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return DEFAULT_REGISTRY


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def metrics_allowed(request: Request, token: SecretStr | None) -> None:
    """Loopback callers, or the bearer of ``HEALTHGOV_METRICS_TOKEN`` when one is set; anyone else is refused."""
    if token is not None:
        presented = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            raise errors.Unauthenticated("metrics need the scrape token")
        return
    if not _loopback(request.client.host if request.client else None):
        raise errors.Forbidden("metrics are served to loopback callers only (or set HEALTHGOV_METRICS_TOKEN)")


# --- request id and logs --------------------------------------------------------------------------------------

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("healthgov_request_id", default=None)
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_of(sent: bytes | None) -> str:
    """The caller's ``X-Request-ID`` if it is a short token (it reaches logs and audit events), else a new one."""
    if sent:
        with contextlib.suppress(UnicodeDecodeError):
            text = sent.decode("ascii")
            if _REQUEST_ID_RE.fullmatch(text):
                return text
    return uuid.uuid4().hex


class _Context(logging.Filter):
    """Adds the service, the request id and the trace id to every record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = REQUEST_ID.get()
        if not hasattr(record, "trace_id"):  # an access line brings its request's own
            span = trace.get_current_span().get_span_context()
            record.trace_id = format(span.trace_id, "032x") if span.is_valid else None
        return True


class Formatter(JsonFormatter):
    """JSON lines; a traceback keeps the exception's type and frames, never its message (it may quote data)."""

    def formatException(self, ei: Any) -> str:
        exc = ei[1]
        frames = traceback.format_tb(ei[2]) if ei[2] is not None else []
        chain = []
        while exc is not None and len(chain) < 5:
            chain.append(type(exc).__qualname__)
            exc = exc.__cause__ or exc.__context__
        return "".join(frames) + " <- ".join(chain)


def setup_logging(service: str, settings: TelemetrySettings) -> None:
    """JSON lines on stderr for the root logger and uvicorn's (idempotent; other handlers are left alone)."""
    if settings.log_format != "json":
        return
    root = logging.getLogger()
    if any(getattr(h, "healthgov", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.healthgov = True  # type: ignore[attr-defined]
    handler.setFormatter(Formatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                   rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                                   json_serializer=lambda o, **_: orjson.dumps(o, default=str).decode()))
    handler.addFilter(_Context(service))
    root.addHandler(handler)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    if settings.access_log:
        access_log.setLevel(logging.INFO)


# --- traces ---------------------------------------------------------------------------------------------------

_propagator = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
_tracing_lock = threading.Lock()


class JsonLinesExporter(SpanExporter):
    """Spans as JSON lines in a file: for tests and for a machine without a collector."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for s in spans:
            ctx = s.get_span_context()
            lines.append(orjson.dumps({
                "service": s.resource.attributes.get("service.name"),
                "name": s.name, "kind": s.kind.name,
                "trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"),
                "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                "links": [format(link.context.trace_id, "032x") for link in s.links],
                "start_ns": s.start_time, "end_ns": s.end_time,
                "status": s.status.status_code.name, "attributes": dict(s.attributes or {}),
            }))
        with self._lock, self.path.open("ab") as fh:
            fh.write(b"\n".join(lines) + b"\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def setup_tracing(service: str, settings: TelemetrySettings) -> None:
    """Turn tracing on for this process if an exporter is configured (the first service set up wins)."""
    global _tracer, _provider
    if settings.trace_exporter == "none":
        return
    with _tracing_lock:
        if _tracer is not None:
            return
        exporter: SpanExporter
        if settings.trace_exporter == "file":
            exporter = JsonLinesExporter((settings.trace_dir or settings.state_dir / "traces") / f"{service}.jsonl")
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # optional package

            exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_ENDPOINT etc.
        _provider = TracerProvider(resource=Resource.create({"service.name": f"healthgov-{service}"}),
                                   sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)))
        _provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        _tracer = _provider.get_tracer("healthgov")


def tracer() -> trace.Tracer | None:
    """This process's tracer, or None while tracing is off (every hook tests this first)."""
    return _tracer


def flush_traces() -> None:
    if _provider is not None:
        _provider.force_flush(5000)


def trace_headers() -> list[tuple[str, bytes]] | None:
    """The current trace context as Kafka headers (``traceparent``), or None when nothing is traced."""
    if _tracer is None:
        return None
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()] or None


def _context_of(headers: Sequence[tuple[str, bytes]] | None) -> Context | None:
    if not headers:
        return None
    carrier = {k: v.decode("ascii", "replace") for k, v in headers if k in ("traceparent", "tracestate") and v}
    return _propagator.extract(carrier) if carrier else None


@contextlib.contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> Iterator[None]:
    """A child span of the current one while tracing is on; nothing otherwise."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(name, kind=kind, attributes=attributes):
        yield


@contextlib.contextmanager
def consumed(topic: str, group: str, records: Sequence[Any]) -> Iterator[None]:
    """Around one consumer batch: its metrics, and a span per traced message under the producer's span.

    The batch is handled as one (one database transaction), so every
    message's span has the batch's start and end; untraced messages cost one
    header look-up.
    """
    started_ns = time.time_ns()
    start = time.perf_counter()
    failed: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        failed = exc
        raise
    finally:
        if failed is None:
            KAFKA_CONSUMED.labels(topic, group).inc(len(records))
            KAFKA_HANDLE_LATENCY.labels(topic, group).observe(time.perf_counter() - start)
        if _tracer is not None:
            ended_ns = time.time_ns()
            for rec in records:
                parent = _context_of(getattr(rec, "headers", None))
                if parent is None:
                    continue
                s = _tracer.start_span(f"consume {topic}", context=parent, kind=SpanKind.CONSUMER,
                                       start_time=started_ns, attributes={
                                           "messaging.system": "kafka", "messaging.destination.name": topic,
                                           "messaging.consumer.group.name": group,
                                           "messaging.kafka.partition": int(getattr(rec, "partition", -1)),
                                           "messaging.kafka.offset": int(getattr(rec, "offset", -1)),
                                           "messaging.batch.message_count": len(records)})
                if failed is not None:
                    s.set_status(Status(StatusCode.ERROR, type(failed).__name__))
                s.end(end_time=ended_ns)


def record_lag(topic: str, group: str, consumer: Any) -> None:
    """Each assigned partition's distance from its high watermark (as the last fetch saw it, no round trip)."""
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        position = consumer.position(tp, timeout_ms=100)
        if position is not None:
            KAFKA_LAG.labels(topic, group, str(tp.partition)).set(max(0, high - position))


# --- the HTTP layer -------------------------------------------------------------------------------------------


class TelemetryMiddleware:
    """Request id, metrics per route template, a server span and an access line (pure ASGI, no body copy)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent_id = None
        others = []
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                sent_id = v
            else:
                others.append((k, v))
        rid = request_id_of(sent_id)
        if sent_id != rid.encode():  # downstream (records' audit events) reads the id from the headers
            scope["headers"] = [*others, (b"x-request-id", rid.encode())]
        token = REQUEST_ID.set(rid)
        status = 500
        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), rid_header]}
            await send(message)

        method = scope["method"]
        trace_id = None
        start = time.perf_counter()
        try:
            if _tracer is None:
                await self.app(scope, receive, send_with_id)
            else:
                parent = _context_of([(k.decode("latin-1"), v) for k, v in scope["headers"]
                                      if k in (b"traceparent", b"tracestate")])
                with _tracer.start_as_current_span(method, context=parent, kind=SpanKind.SERVER,
                                                   record_exception=False, set_status_on_exception=False) as s:
                    trace_id = format(s.get_span_context().trace_id, "032x")
                    try:
                        await self.app(scope, receive, send_with_id)
                    finally:
                        route = _template(scope)
                        s.update_name(f"{method} {route}")
                        s.set_attributes({"http.request.method": method, "http.route": route,
                                          "http.response.status_code": status, "healthgov.request_id": rid,
                                          "healthgov.service": self.service})
                        if status >= 500:
                            s.set_status(Status(StatusCode.ERROR))
        finally:
            elapsed = time.perf_counter() - start
            route = _template(scope)
            HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, route).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("request", extra={"method": method, "route": route, "status": status,
                                                  "duration_ms": round(elapsed * 1000, 3), "trace_id": trace_id})
            REQUEST_ID.reset(token)


def _template(scope: Scope) -> str:
    """The matched route's template (a path can hold a patient's record id); unknown paths are one label."""
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED


def install_telemetry(app: FastAPI, service: str) -> None:
    """Metrics, traces, JSON logs and ``/metrics`` for one service; call it last in the app factory.

    Added last, the middleware is the outermost of the service's own: its
    clock and span cover the error handlers and the security headers too.
    """
    settings = TelemetrySettings()
    setup_logging(service, settings)
    setup_tracing(service, settings)
    app.add_middleware(TelemetryMiddleware, service=service)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        metrics_allowed(request, settings.metrics_token)
        return Response(generate_latest(metrics_registry()), media_type=CONTENT_TYPE_LATEST)
