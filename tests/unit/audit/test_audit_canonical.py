"""The fast RFC 8785 path must be byte-identical to the reference implementation."""

from __future__ import annotations

import sys

import orjson
import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from services.audit.consumer import canonical_event
from services.contracts.events import Accessor, AuditDecision, AuditEvent, ResourceRef
from services.tlog.canonical import canonical_json
from tests.unit.audit.factory import event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


def _reference(value: object) -> bytes | type[Exception]:
    try:
        return rfc8785.dumps(value)
    except Exception as exc:  # the reference refuses some values (unsafe integers)
        return type(exc)


def assert_agrees_with_reference(value: object) -> None:
    """Same bytes as rfc8785, or the same refusal."""
    want = _reference(value)
    if isinstance(want, bytes):
        assert canonical_json(value) == want
    else:
        with pytest.raises(want):
            canonical_json(value)


@given(json_values)
def test_agrees_with_rfc8785_on_arbitrary_json(value: object) -> None:
    assert_agrees_with_reference(value)


def test_every_code_point_is_escaped_as_rfc8785_escapes_it() -> None:
    # One string per block of code points, as a value and as a key (surrogates cannot be encoded).
    points = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    for i in range(0, len(points), 4096):
        block = "".join(points[i:i + 4096])
        assert canonical_json([block]) == rfc8785.dumps([block])
        assert canonical_json({block: 1, "a": 2}) == rfc8785.dumps({block: 1, "a": 2})


@pytest.mark.parametrize("value", [
    {"\U0001f600": 1, "\uffff": 2, "\ue000": 3},  # astral vs high-BMP keys: UTF-16 order differs
    {"n": 2**53}, {"n": -(2**53)}, {"n": 2**53 - 1}, {"x": 1.0}, {"x": 1e21}, {"x": -0.0},
])
def test_edge_cases_take_the_reference_path_or_agree(value: object) -> None:
    assert_agrees_with_reference(value)


def test_an_audit_event_canonicalises_as_the_contract_does() -> None:
    ev = AuditEvent(kind="disclosure", accessor=Accessor(id="dr-ü", org="gy", org_type="hospital", role="c"),
                    patient="p-1", resources=[ResourceRef(type="Condition", id="x", version="1")],
                    decision=AuditDecision(allow=True, reasons=["r"], obligations={"notify_after": None}),
                    details={"reason": "émergence \u2028 \x01"})
    assert canonical_json(ev.model_dump(mode="json", by_alias=True)) == ev.canonical()
    doc = event()
    assert canonical_json(doc) == rfc8785.dumps(doc)


def _walk(schema: dict, defs: dict, path: str, found: dict[str, set[str]]) -> None:
    if "$ref" in schema:
        _walk(defs[schema["$ref"].split("/")[-1]], defs, path, found)
        return
    for option in schema.get("anyOf", []):
        _walk(option, defs, path, found)
    kind = schema.get("type")
    if kind in ("number", "integer"):
        found["numbers"].add(path)
    if kind == "object" and schema.get("additionalProperties"):
        found["free"].add(path)
    for name, sub in schema.get("properties", {}).items():
        assert name.isascii(), name
        _walk(sub, defs, f"{path}.{name}".lstrip("."), found)
    if "items" in schema:
        _walk(schema["items"], defs, f"{path}[]", found)


def test_the_consumer_checks_every_part_of_an_event_that_could_need_the_slow_path() -> None:
    """canonical_event passes only legal, details and decision.obligations as free-form: keep it true."""
    schema = AuditEvent.model_json_schema()
    found: dict[str, set[str]] = {"numbers": set(), "free": set()}
    _walk(schema, schema.get("$defs", {}), "", found)
    assert found == {"numbers": set(), "free": {"legal", "details", "decision.obligations"}}


def test_events_must_carry_their_own_id_and_time() -> None:
    doc = event()
    assert canonical_event(canonical_json(doc)) == (doc["event_id"], canonical_json(doc))
    for missing in ("event_id", "occurred_at"):
        partial = {k: v for k, v in doc.items() if k != missing}
        with pytest.raises(ValueError, match=f"did not set {missing}"):
            canonical_event(canonical_json(partial))
    with pytest.raises(ValueError, match="not JSON"):
        canonical_event(b"{nope")
    with pytest.raises(ValueError, match="accessor"):
        canonical_event(canonical_json({k: v for k, v in doc.items() if k != "accessor"}))
    floaty = {**doc, "details": {"score": 0.1, "big": 2**60}}
    with pytest.raises(ValueError):  # RFC 8785 refuses integers beyond 2**53; so does the log
        canonical_event(orjson.dumps(floaty))
    floaty["details"].pop("big")
    assert canonical_event(orjson.dumps(floaty))[1] == rfc8785.dumps({**doc, "details": {"score": 0.1}})
