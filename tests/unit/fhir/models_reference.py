"""The structural validation ingest used before ``structure.py``, kept as the reference its tests compare with.

fhir.resources (R4B) models for structure and types, and a separate walk for
ele-1 (empty elements), exactly as ``services/fhir/validation.py`` had them.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from services.contracts.ids import RULE, is_fhir_id
from services.fhir.validation import MAX_ISSUES_PER_RESOURCE, Issue


def _path(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def validate_resource_models(doc: Any, where: str) -> list[Issue]:
    """Issues with one resource through the fhir.resources models."""
    if not isinstance(doc, dict):
        return [Issue(f"{where}: expected a JSON object", where, "structure")]
    rtype = doc.get("resourceType")
    if not isinstance(rtype, str):
        return [Issue(f"{where}: resourceType is missing", f"{where}.resourceType", "required")]
    if "id" in doc and not is_fhir_id(doc["id"]):
        return [Issue(f"{where}.id: {RULE}", f"{where}.id", "value")]
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError):  # fhir.resources raises ValueError for an unknown type
        return [Issue(f"{where}: unknown resourceType", f"{where}.resourceType", "not-supported")]
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        return [
            Issue(f"{where}{_path(err['loc'])}: {err['msg']}", f"{where}{_path(err['loc'])}")
            for err in exc.errors(include_input=False, include_url=False)[:MAX_ISSUES_PER_RESOURCE]
        ]
    except LookupError:  # fhir_core raises KeyError for a nested resource of unknown type
        return [Issue(f"{where}: a contained or nested resource has an unknown resourceType", where, "not-supported")]
    except (ValueError, TypeError) as exc:
        return [Issue(f"{where}: {type(exc).__name__}", where)]
    except RecursionError:
        return [Issue(f"{where}: elements are nested too deeply", where, "too-costly")]
    return []


def _hollow(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        return not value or (len(value) == 1 and "id" in value)
    return value is None or (kind is list and not value)


def _empties(node: Any, trail: str, out: list[str]) -> None:
    """ele-1 as a walk of its own: every element has a value or children."""
    if type(node) is dict:
        for key, value in node.items():
            if _hollow(value):
                out.append(f"{trail}.{key}")
            elif type(value) is list:
                pair = key[1:] if key[:1] == "_" else "_" + key
                if None in value and not isinstance(node.get(pair), list):
                    out.append(f"{trail}.{key}")
                _empties(value, f"{trail}.{key}", out)
            elif type(value) is dict:
                _empties(value, f"{trail}.{key}", out)
    elif type(node) is list:
        for i, value in enumerate(node):
            if value is not None and _hollow(value):
                out.append(f"{trail}[{i}]")
            elif type(value) is dict or type(value) is list:
                _empties(value, f"{trail}[{i}]", out)


def structural_models(doc: Any, where: str, holders: list[Any] | None = None,
                      coded: list[Any] | None = None) -> tuple[list[Issue], list[str]]:
    """What ``validation.structural`` answered before: the models' issues, else the empty elements' paths.

    ``holders`` and ``coded`` are not filled: the comparison is of verdicts, not of references or labels.
    """
    errors = validate_resource_models(doc, where)
    empty: list[str] = []
    if not errors:
        _empties(doc, where, empty)
    return errors, empty
