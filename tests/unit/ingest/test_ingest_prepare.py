"""NDJSON lines to sealed messages: every fixture line is taken, bad lines are named, seals open."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import orjson

from services.adapters import crypto
from services.adapters.kafka import check_size
from services.contracts.envelope import envelope_aad
from services.contracts.events import IngestEnvelope, SealedPayload
from services.contracts.topics import MAX_INGEST_MESSAGE_BYTES, MAX_RESOURCE_BYTES
from services.ingest.prepare import Context, chunk_ranges, prepare_lines


def _open(value: bytes, key: bytes, private: bytes) -> tuple[IngestEnvelope, SealedPayload]:
    env = IngestEnvelope.model_validate(orjson.loads(value))
    plain = crypto.open_sealed(crypto.b64d(env.sealed), private, envelope_aad(env.submission_id, env.hospital,
                                                                               key.decode()))
    return env, SealedPayload.model_validate(orjson.loads(plain))


def test_every_line_of_every_fixture_file_is_accepted(all_fixture_lines: dict[str, list[bytes]],
                                                      ctx: Context) -> None:
    total = 0
    for name, lines in all_fixture_lines.items():
        prepared = prepare_lines(ctx, "gy-hosp-001", "s1", 1, lines)
        rejected = [(o.index, o.issues[:1]) for o in prepared.outcomes if not o.ok]
        assert not rejected, f"{name}: {rejected[:3]}"
        assert prepared.resources == len(lines)
        total += len(lines)
    assert total > 7160  # both sets


def test_bad_lines_are_named_and_the_rest_is_sealed(ctx: Context, hpke_pair: tuple[bytes, bytes],
                                                   ten_resources: list[dict[str, Any]]) -> None:
    patient = next(r for r in ten_resources if r["resourceType"] == "Patient")
    conditions = [r for r in ten_resources if r["resourceType"] == "Condition"
                  and r["subject"]["reference"] == f"Patient/{patient['id']}"]
    lines = [orjson.dumps(patient), b"{not json", b"", orjson.dumps({"resourceType": "NoSuchType"}),
             orjson.dumps(conditions[0] | {"onsetDateTime": "last tuesday"}),
             orjson.dumps({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                           "subject": {"reference": "urn:uuid:nowhere"}}),
             *[orjson.dumps(c) for c in conditions[1:]]]
    prepared = prepare_lines(ctx, "gy-hosp-001", "sub", 10, lines)
    bad = {o.index: o.issues[0] for o in prepared.outcomes if not o.ok}
    assert set(bad) == {11, 13, 14, 15}  # line numbers as in the sender's file (blank line 12 skipped)
    assert bad[11][2] == "structure" and bad[11][0].startswith("line 11: malformed JSON")
    assert bad[13][1] == "NoSuchType.resourceType" and bad[13][2] == "not-supported"
    assert bad[14][1] == "Condition.onsetDateTime" and bad[14][0].startswith("line 14: ")
    assert bad[15][1] == "Encounter.subject.reference" and "nowhere" not in bad[15][0]
    # Good lines: all of one patient, grouped in messages of at most 50, keyed by the pseudonym.
    assert prepared.resources == 1 + len(conditions) - 1
    opened = [_open(m.value, m.key or b"", hpke_pair[0]) for m in prepared.messages]
    pseudonym = ctx.key_for(patient["id"])
    assert {m.key for m in prepared.messages} == {pseudonym.encode()}
    assert all(len(p.resources) <= 50 for _, p in opened)
    assert sum(len(p.resources) for _, p in opened) == prepared.resources
    assert all(env.hospital == "gy-hosp-001" for env, _ in opened)
    # Nothing readable on the wire without the records key.
    assert all(patient["id"].encode() not in m.value for m in prepared.messages)


def test_directory_resources_travel_under_the_directory_key(ctx: Context, hpke_pair: tuple[bytes, bytes],
                                                            ten_resources: list[dict[str, Any]]) -> None:
    orgs = [orjson.dumps(r) for r in ten_resources if r["resourceType"] in ("Organization", "Practitioner")]
    prepared = prepare_lines(ctx, "gy-hosp-001", "sub", 1, orgs)
    assert {m.key for m in prepared.messages} == {b"directory"}
    types = Counter(r["resourceType"] for m in prepared.messages
                    for r in _open(m.value, m.key or b"", hpke_pair[0])[1].resources)
    assert types == Counter({"Organization": 43, "Practitioner": 43})


def test_a_seal_does_not_open_under_another_hospital(ctx: Context, hpke_pair: tuple[bytes, bytes],
                                                     ten_resources: list[dict[str, Any]]) -> None:
    [message] = prepare_lines(ctx, "gy-hosp-001", "sub", 1, [orjson.dumps(ten_resources[0])]).messages
    env = orjson.loads(message.value)
    env["hospital"] = "gy-hosp-002"  # replayed under another sender's name
    forged = orjson.dumps(env)
    try:
        _open(forged, message.key or b"", hpke_pair[0])
        raise AssertionError("a re-addressed envelope opened")
    except crypto.DecryptionError:
        pass


def _document(ten_resources: list[dict[str, Any]], json_bytes: int, n: int = 0) -> dict[str, Any]:
    """A DocumentReference of exactly ``json_bytes`` of compact JSON (an embedded scanned document)."""
    doc = copy.deepcopy(next(r for r in ten_resources if r["resourceType"] == "DocumentReference"))
    doc["id"] = f"doc-{n}"
    doc["content"][0]["attachment"]["data"] = ""
    pad = json_bytes - len(orjson.dumps(doc))
    doc["content"][0]["attachment"]["data"] = "QUFB" * (pad // 4)
    doc["id"] += "x" * (pad % 4)
    assert len(orjson.dumps(doc)) == json_bytes
    return doc


def test_large_resources_are_packed_within_the_message_limit(ctx: Context, hpke_pair: tuple[bytes, bytes],
                                                             ten_resources: list[dict[str, Any]]) -> None:
    """Thirty 1 MB documents of one patient: by count they were one message of 40 MB the broker refused."""
    docs = [_document(ten_resources, 1_000_000, n) for n in range(30)]
    prepared = prepare_lines(ctx, "gy-hosp-001", "sub", 1, [orjson.dumps(d) for d in docs])
    assert prepared.resources == 30 and all(o.ok for o in prepared.outcomes)
    assert len(prepared.messages) > 1
    for m in prepared.messages:
        assert len(m.value) <= MAX_INGEST_MESSAGE_BYTES
        check_size(m)  # the producer's own check of the topic's limit
    opened = [r for m in prepared.messages for r in _open(m.value, m.key or b"", hpke_pair[0])[1].resources]
    assert [r["id"] for r in opened] == [d["id"] for d in docs]
    assert opened[7]["content"] == docs[7]["content"]  # the document itself, byte for byte


def test_a_resource_at_the_limit_travels_and_one_byte_more_is_413(ctx: Context, hpke_pair: tuple[bytes, bytes],
                                                                  ten_resources: list[dict[str, Any]]) -> None:
    at_limit = _document(ten_resources, MAX_RESOURCE_BYTES, 1)
    above = _document(ten_resources, MAX_RESOURCE_BYTES + 1, 2)
    prepared = prepare_lines(ctx, "gy-hosp-001", "sub", 1, [orjson.dumps(at_limit), orjson.dumps(above)])
    ok, refused = prepared.outcomes
    assert ok.ok and ok.status == 201
    assert refused.status == 413 and refused.rtype == "DocumentReference"
    [(diagnostics, expression, code, *_)] = refused.issues
    assert code == "too-costly" and expression == "line 2"
    assert diagnostics.startswith("line 2: the DocumentReference resource is ")
    assert str(MAX_RESOURCE_BYTES) in diagnostics
    [message] = prepared.messages
    check_size(message)
    [stored] = _open(message.value, message.key or b"", hpke_pair[0])[1].resources
    assert stored["id"] == at_limit["id"] and stored["content"] == at_limit["content"]


def test_chunks_are_bounded_in_lines_and_bytes() -> None:
    lines = [b"x" * 100] * 50 + [b"y" * 5_000] * 10 + [b"z" * 20_000]
    ranges = chunk_ranges(lines, max_lines=20, max_bytes=12_000)
    assert ranges[0] == (0, 20) and ranges[-1] == (60, 61)  # a line longer than the budget goes alone
    assert [i for a, b in ranges for i in range(a, b)] == list(range(len(lines)))
    assert all(b - a <= 20 and (b - a == 1 or sum(len(x) + 1 for x in lines[a:b]) <= 12_000) for a, b in ranges)


def test_the_quality_report_counts_the_validity_warnings_of_accepted_lines(ctx: Context) -> None:
    warned = {"resourceType": "Patient", "id": "w1", "gender": "female",
              "maritalStatus": {"coding": [{"system": "http://x.example", "code": "Q"}]}}
    clean = {"resourceType": "Patient", "id": "w2", "gender": "male"}
    prepared = prepare_lines(ctx, "gy-hosp-001", "sub", 1, [orjson.dumps(warned), orjson.dumps(clean)])
    assert [len(o.warnings) for o in prepared.outcomes] == [1, 0]
    t = prepared.tally.types["Patient"]
    assert (t.accepted, t.warnings, dict(t.warning_rules)) == (2, 1, {"binding-extensible": 1})
