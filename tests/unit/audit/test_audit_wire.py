"""The bulk stream formats survive any split of the stream, and a cut stream is an error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tlog import wire


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(st.lists(st.binary(max_size=300), max_size=40), st.lists(st.integers(min_value=0), max_size=20))
def test_entries_round_trip_through_any_chunking(bodies: list[bytes], cuts: list[int]) -> None:
    rows = [(i + 7, b) for i, b in enumerate(bodies)]
    stream = b"".join(wire.encode_entries(rows, batch=3))
    assert list(wire.decode_entries(_split(stream, cuts))) == rows


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=50), st.lists(st.integers(min_value=0), max_size=20))
def test_hashes_round_trip_through_any_chunking(hashes: list[bytes], cuts: list[int]) -> None:
    assert list(wire.decode_hashes(_split(b"".join(hashes), cuts))) == hashes


def test_a_cut_stream_is_an_error() -> None:
    stream = b"".join(wire.encode_entries([(0, b"abc"), (1, b"defg")]))
    with pytest.raises(wire.FrameError):
        list(wire.decode_entries([stream[:-1]]))
    with pytest.raises(wire.FrameError):
        list(wire.decode_hashes([bytes(33)]))
