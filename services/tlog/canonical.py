"""RFC 8785 (JSON Canonicalization Scheme) for audit events, fast on the common case.

The log hashes the RFC 8785 form of each event. The reference implementation
(``rfc8785``) is pure Python and costs ~90 µs per event, a large share of the
consumer's budget. For the values audit events are made of — strings, booleans,
null, safe integers, lists and objects whose keys are in the Basic Multilingual
Plane — RFC 8785 output is byte for byte what ``orjson`` writes with sorted
keys: the same string escaping (checked for every code point by the tests), no
whitespace, integers in decimal, and key order by UTF-16 code units equals key
order by code points when no key holds a character above U+FFFF. Anything
else (floats, big integers, astral keys) goes to ``rfc8785``, which stays the
definition. ``tests/unit/audit/test_audit_canonical.py`` checks the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import rfc8785

__all__ = ["canonical_json"]

_MAX_SAFE = 2**53 - 1


def _simple(value: Any) -> bool:
    """True if ``value`` is built only from types where orjson's output is RFC 8785's."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_MAX_SAFE <= value <= _MAX_SAFE
    if kind is list:
        return all(_simple(item) for item in value)
    if kind is dict:
        return all(type(key) is str and (key.isascii() or max(key) <= "\uffff") and _simple(item)
                   for key, item in value.items())
    return False


def canonical_json(value: Any, *, free_form: Iterable[Any] | None = None) -> bytes:
    """Return the RFC 8785 canonical JSON bytes of ``value`` (a JSON-like Python value).

    ``free_form``: when a schema already guarantees that ``value`` is made of
    strings, booleans, nulls and lists and objects of them with ASCII keys,
    except for some free-form parts, pass those parts: only they are checked.
    """
    parts = (value,) if free_form is None else free_form
    if all(_simple(part) for part in parts):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return rfc8785.dumps(value)
