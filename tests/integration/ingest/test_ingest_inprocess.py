"""The ingest app in-process with tight limits, on the real OPA, PostgreSQL and Kafka (or a dead broker)."""

from __future__ import annotations

import gzip
import socket
import uuid
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from services.contracts.topics import INGEST_RESOURCES
from services.ingest import service
from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from tests.conftest import auth, wait_for
from tests.integration.ingest.support import assert_never_stored, condition, new_patient, wait_readable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(**overrides: object) -> Iterator[TestClient]:
    settings = IngestSettings(validation_workers=0, **overrides)  # type: ignore[arg-type]
    assert settings.database_url and settings.database_url.startswith("postgresql")
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def tight(stack) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    yield from _client(max_body_bytes=20_000, rate_limit_per_s=0.2, rate_limit_burst=3)


@pytest.fixture
def no_broker(stack) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    yield from _client(kafka_bootstrap=f"127.0.0.1:{_free_port()}")


def _post(client: TestClient, token, path: str, body: bytes, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(path, content=body, headers=auth(token("gy-hosp-003", "ingest", role="integration"),
                                                        **headers))


def test_a_flood_from_one_hospital_gets_429_with_retry_after(tight: TestClient, token) -> None:
    statuses = [_post(tight, token, "/fhir/Patient", orjson.dumps(new_patient())).status_code for _ in range(4)]
    assert statuses[:3] == [201, 201, 201]
    assert statuses[3] == 429
    r = _post(tight, token, "/fhir/Patient", orjson.dumps(new_patient()))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json()["issue"][0]["code"] == "throttled"
    # Another hospital is not throttled by this one.
    other = tight.post("/fhir/Patient", content=orjson.dumps(new_patient()),
                       headers=auth(token("gy-hosp-002", "ingest", role="integration")))
    assert other.status_code == 201


def test_oversize_bodies_are_refused_while_streaming_and_gzip_bombs_too(stack, token) -> None:
    for client in _client(max_body_bytes=20_000, rate_limit_per_s=0):
        big = b"\n".join(orjson.dumps(condition(str(uuid.uuid4()))) for _ in range(200))
        assert len(big) > 20_000

        def chunks(data: bytes) -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
            for i in range(0, len(data), 4096):
                yield data[i:i + 4096]

        r = client.post("/fhir/$import", content=chunks(big),
                        headers=auth(token("gy-hosp-003", "ingest", role="integration")))
        assert r.status_code == 413, r.text
        bomb = gzip.compress(b" " * 5_000_000)
        assert len(bomb) < 20_000
        r = _post(client, token, "/fhir/$import", bomb, **{"Content-Encoding": "gzip"})
        assert r.status_code == 413
        small = gzip.compress(orjson.dumps(new_patient()))
        assert _post(client, token, "/fhir/Patient", small, **{"Content-Encoding": "gzip"}).status_code == 201


def test_no_broker_means_503_and_a_retry_later_goes_through(no_broker: TestClient, token, stack) -> None:
    patient = new_patient()
    key = str(uuid.uuid4())
    r = _post(no_broker, token, "/fhir/Patient", orjson.dumps(patient), **{"Idempotency-Key": key})
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    # The idempotency claim was released: the retry (against a working broker) is processed, not 409.
    for client in _client():
        retry = _post(client, token, "/fhir/Patient", orjson.dumps(patient), **{"Idempotency-Key": key})
        assert retry.status_code == 201, retry.text


def _log_end(settings, topic: str) -> int:  # type: ignore[no-untyped-def]
    """How many messages ``topic`` holds, committed or not (its partitions' high watermarks)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_uncommitted")
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def test_a_submission_that_fails_half_way_leaves_nothing_stored(stack, token, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The first patient's messages are on the broker when preparing the second one fails: neither is stored."""
    first, second = new_patient(), new_patient()
    first_condition, second_condition = condition(first["id"]), condition(second["id"])
    body = b"\n".join(orjson.dumps(r) for r in (first, first_condition, second, second_condition))
    real, calls = service.prepare_lines, []
    before = _log_end(settings, INGEST_RESOURCES.name)

    def fails_on_the_second_chunk(*job):  # type: ignore[no-untyped-def]
        calls.append(job)
        if len(calls) == 2:
            wait_for(lambda: _log_end(settings, INGEST_RESOURCES.name) > before, 30, "the first chunk on the log")
            raise RuntimeError("a validation worker was lost")
        return real(*job)

    monkeypatch.setattr(service, "prepare_lines", fails_on_the_second_chunk)
    for client in _client(chunk_lines=2, pool_threshold=1_000_000):
        with pytest.raises(RuntimeError, match="validation worker"):
            _post(client, token, "/fhir/$import", body, **{"Content-Type": "application/fhir+ndjson"})
        assert len(calls) == 2
        assert_never_stored(settings, token, first["id"], [("Patient", first["id"]),
                                                           ("Condition", first_condition["id"])], org="gy-hosp-003")
        monkeypatch.undo()  # the hospital sends it again, and this time all of it is stored
        r = _post(client, token, "/fhir/$import", body, **{"Content-Type": "application/fhir+ndjson"})
        assert r.status_code == 200, r.text
        wait_readable(settings, token, "Condition", second_condition["id"], org="gy-hosp-003")
        wait_readable(settings, token, "Condition", first_condition["id"], org="gy-hosp-003")
