"""The structure table against the fhir.resources models it replaced: same verdicts, stricter only where they were lax.

Every shipped fixture resource, then systematically broken copies of a sample
of them (one mutation at each element: unknown element, wrong JSON type, bad
date, array for single and single for array, missing required element, bad
id, empty object or array, wrong choice suffix, null in an array of complex
elements, broken contained resources). Each is judged by ``check_resource``
twice, once as it is (the table, ele-1 in the same walk) and once with the
models and the separate ele-1 walk it replaced (``models_reference.py``); the
verdicts must agree, and every refusal must
name the element that was broken.
"""

from __future__ import annotations

import copy
import gzip
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.adapters.config import REPO_ROOT
from services.fhir import validation
from services.fhir.structure import structure
from tests.unit.fhir.models_reference import structural_models, validate_resource_models

FIXTURES = [REPO_ROOT / "deploy" / "demo" / "fixtures" / name for name in ("synthea-10-patients",
                                                                          "synthea-100-patients")]
Step = str | int


def _lines(directory: Path) -> list[bytes]:
    return [ln for f in sorted(directory.glob("*.ndjson.gz"))
            for ln in gzip.decompress(f.read_bytes()).splitlines() if ln.strip()]


def _fixture_docs() -> list[dict[str, Any]]:
    return [orjson.loads(ln) for d in FIXTURES for ln in _lines(d)]


def _accepted(doc: Any, *, models: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[bool, list[validation.Issue]]:
    with monkeypatch.context() as m:
        if models:
            m.setattr(validation, "structural", structural_models)
        verdict = validation.check_resource(doc, "R")
    return verdict.accepted, verdict.errors


def test_every_fixture_resource_is_accepted_by_both() -> None:
    docs = _fixture_docs()
    assert len(docs) > 10_000
    for doc in docs:
        assert validation.validate_resource(doc, "R") == [], doc.get("resourceType")
        assert validate_resource_models(doc, "R") == [], doc.get("resourceType")


# --- systematic mutations ------------------------------------------------------------------------------------------


def _walk(node: Any, trail: tuple[Step, ...] = ()) -> Iterator[tuple[tuple[Step, ...], Any]]:
    """Every (trail, value) below ``node``."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for step, value in items:
        if step == "resourceType":
            continue
        yield (*trail, step), value
        yield from _walk(value, (*trail, step))


def _at(doc: Any, trail: tuple[Step, ...]) -> Any:
    for step in trail:
        doc = doc[step]
    return doc


def _set(doc: dict[str, Any], trail: tuple[Step, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    _at(out, trail[:-1])[trail[-1]] = value
    return out


def _rename(doc: dict[str, Any], trail: tuple[Step, ...], name: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    parent = _at(out, trail[:-1])
    parent[name] = parent.pop(trail[-1])
    return out


def _drop(doc: dict[str, Any], trail: tuple[Step, ...]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    del _at(out, trail[:-1])[trail[-1]]
    return out


_CHOICES = tuple(sorted(
    {name for items in structure().choices.values() for name, _, _ in items}, key=len, reverse=True))


_DATE_LIKE = re.compile(r"[12][0-9]{3}(-|$)")


def _wrong_type(value: Any) -> Any:
    """A JSON value of another type that the models refused too (their lax coercions are not tried here)."""
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, int | float):
        return "many"
    if isinstance(value, str):
        return True if _DATE_LIKE.match(value) else 12345  # the models read a number as a timestamp
    return None


def mutations(doc: dict[str, Any]) -> Iterator[tuple[str, tuple[Step, ...], dict[str, Any]]]:
    """(what, where, the broken copy) for one resource."""
    yield "unknown element", ("madeUpElement",), {**copy.deepcopy(doc), "madeUpElement": "x"}
    yield "bad id", ("id",), {**copy.deepcopy(doc), "id": "not an id!"}
    for trail, value in _walk(doc):
        key = trail[-1]
        if isinstance(value, dict):
            yield "unknown nested element", (*trail, "madeUpElement"), _set(doc, trail, {**value, "madeUpElement": 1})
            yield "empty object", trail, _set(doc, trail, {})
            if isinstance(key, str):
                yield "array for single", trail, _set(doc, trail, [value])
        elif isinstance(value, list):
            yield "empty array", trail, _set(doc, trail, [])
            if value and isinstance(key, str):
                yield "single for array", trail, _set(doc, trail, value[0])
            if value and isinstance(value[0], dict):
                yield "null in array", (*trail, 0), _set(doc, (*trail, 0), None)
        else:
            wrong = _wrong_type(value)
            if wrong is not None:
                yield "wrong type", trail, _set(doc, trail, wrong)
            if isinstance(value, str) and _DATE_LIKE.match(value):
                yield "bad date", trail, _set(doc, trail, value[:4] + "-13-45" + value[10:])
                yield "impossible date", trail, _set(doc, trail, value[:4] + "-02-30" + value[10:])
            if isinstance(key, str) and not isinstance(trail[-2] if len(trail) > 1 else None, int):
                yield "array for single", trail, _set(doc, trail, [value])
        if isinstance(key, str):
            yield "missing element", trail, _drop(doc, trail)
            choice = next((c for c in _CHOICES if key.startswith(c) and key[len(c):len(c) + 1].isupper()), None)
            if choice is not None:
                yield "wrong choice suffix", trail, _rename(doc, trail, choice + "Nonsense")
                yield "second choice", trail, {**_set(doc, trail, value), choice + "String": "x"} \
                    if len(trail) == 1 else _set(doc, trail[:-1], {**_at(doc, trail[:-1]), choice + "String": "x"})


def _spell(trail: tuple[Step, ...]) -> str:
    return "R" + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in trail)


def _names(error: validation.Issue, trail: tuple[Step, ...]) -> bool:
    at, broken, parent = error.expression or "", _spell(trail), _spell(trail[:-1])
    ancestor = at != "R" and ((broken + ".").startswith(at + ".") or (broken + "[").startswith(at + "["))
    return error.diagnostics.startswith(f"{at}: ") and (at.startswith(parent) or ancestor)


def _sample() -> list[dict[str, Any]]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for doc in [orjson.loads(ln) for ln in _lines(FIXTURES[0])]:
        by_type.setdefault(doc["resourceType"], []).append(doc)
    return [doc for docs in by_type.values() for doc in docs[:2]]


CONTAINED = [
    ("contained of an unknown type", {"resourceType": "NoSuchThing", "id": "c1"}),
    ("contained with an unknown element", {"resourceType": "Medication", "id": "c1", "madeUpElement": 1}),
    ("contained missing a required element", {"resourceType": "Observation", "id": "c1", "status": "final"}),
    ("contained with a bad date", {"resourceType": "Patient", "id": "c1", "birthDate": "2020-13-01"}),
    ("contained with a wrong type", {"resourceType": "Patient", "id": "c1", "gender": 3}),
    ("contained as an array", [{"resourceType": "Patient", "id": "c1"}]),
    ("contained with a bad id", {"resourceType": "Patient", "id": "bad id"}),
    ("contained nested contained broken", {"resourceType": "Patient", "id": "c1",
                                          "contained": [{"resourceType": "Patient", "birthDate": 5}]}),
]


def test_mutated_resources_get_the_same_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [(what, trail, bad) for doc in _sample() for what, trail, bad in mutations(doc)]
    cases += [(what, ("contained",), {**doc, "contained": [inner]}) for doc in _sample()[:4]
              for what, inner in CONTAINED]
    assert len(cases) > 3000
    differ, unnamed, refused = [], [], 0
    for what, trail, bad in cases:
        new, errors = _accepted(bad, models=False, monkeypatch=monkeypatch)
        old, _ = _accepted(bad, models=True, monkeypatch=monkeypatch)
        if new != old:
            differ.append((what, trail, bad["resourceType"], "accepted by the table" if new else "refused"))
        (table_errors, table_empty), (model_errors, model_empty) = validation.structural(bad, "R"), \
            structural_models(bad, "R")
        if not table_errors and not model_errors and table_empty != model_empty:  # ele-1 finds the same
            differ.append((what, trail, bad["resourceType"], table_empty, model_empty))
        if not new:
            refused += 1
            # At the broken element, inside it, under its parent or at an ancestor other than the root
            # (ext-1 and cpt-2 judge the parent, a required binding the coded element).
            if not any(_names(e, trail) for e in errors):
                unnamed.append((what, trail, [e.diagnostics for e in errors]))
    assert differ == []
    assert unnamed == []
    assert refused > len(cases) // 2


# --- where the models were lax: refused now, as the specification says --------------------------------------------

P = {"resourceType": "Patient", "id": "p1"}
OBS = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}
LAX = [
    ("boolean as a string", {**P, "active": "true"}, "R.active"),
    ("date as a number", {**P, "birthDate": 864_000_000}, "R.birthDate"),
    ("dateTime as a number", {**OBS, "effectiveDateTime": 1700000000}, "R.effectiveDateTime"),
    ("boolean as a number", {**P, "active": 1}, "R.active"),
    ("integer as a string", {**P, "multipleBirthInteger": "2"}, "R.multipleBirthInteger"),
    ("integer as a float", {**P, "multipleBirthInteger": 2.0}, "R.multipleBirthInteger"),
    ("integer as a boolean", {**P, "multipleBirthInteger": True}, "R.multipleBirthInteger"),
    ("decimal as a string", {**OBS, "valueQuantity": {"value": "1.5"}}, "R.valueQuantity.value"),
    ("uri with whitespace", {**P, "implicitRules": "http://a b"}, "R.implicitRules"),
    ("contained without resourceType", {**P, "contained": [{"id": "c1", "language": "en"}]},
     "R.contained[0].resourceType"),
    ("a Python name for an element", {"resourceType": "Encounter", "status": "finished",
                                      "class_fhir": {"code": "AMB"}}, "R.class_fhir R.class"),
    ("fhir_comments", {**P, "fhir_comments": "x"}, "R.fhir_comments"),
]


@pytest.mark.parametrize(("what", "doc", "path"), LAX, ids=[c[0] for c in LAX])
def test_what_the_models_let_through_is_refused_by_name(what: str, doc: dict[str, Any], path: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    old, _ = _accepted(doc, models=True, monkeypatch=monkeypatch)
    new, errors = _accepted(doc, models=False, monkeypatch=monkeypatch)
    assert old, f"the models refuse {what} now: move it to the mutations"
    assert not new
    assert [e.expression for e in errors] == path.split()
    assert str(doc) not in errors[0].diagnostics  # the value is not echoed


def test_accepts_primitive_extension_siblings_and_paired_nulls() -> None:
    ext = [{"url": "http://example.org/why", "valueString": "asked"}]
    doc = {**P, "_gender": {"extension": ext}, "name": [{"given": ["A", None], "_given": [None, {"extension": ext}]}]}
    assert validation.validate_resource(doc, "R") == []
    assert validation.validate_resource({**P, "_gender": {"madeUp": 1}}, "R")[0].expression == "R._gender.madeUp"
    assert validation.validate_resource({**P, "_active": {}}, "R") == []  # empty: ele-1's, in check_resource
    assert not validation.check_resource({**P, "_active": {}}, "R").accepted


def test_nested_resources_in_bundles_are_checked() -> None:
    entry = {"resource": {"resourceType": "Patient", "birthDate": "1990-02-30"}}
    errors = validation.validate_resource({"resourceType": "Bundle", "type": "collection", "entry": [entry]}, "B")
    assert [e.expression for e in errors] == ["B.entry[0].resource.birthDate"]


def test_deep_nesting_is_answered_not_crashed() -> None:
    node: dict[str, Any] = {"url": "http://x"}
    for _ in range(5000):
        node = {"url": "http://x", "extension": [node]}
    errors = validation.validate_resource({**P, "extension": [node]}, "R")
    assert errors and errors[0].code == "too-costly"


def test_an_object_or_array_where_a_primitive_belongs_is_named() -> None:
    doc = {**P, "gender": {"code": "male"}, "birthDate": ["1990-01-01"], "language": {"x": 1}}
    assert [(e.expression, e.code) for e in validation.validate_resource(doc, "R")] == [
        ("R.gender", "invalid"), ("R.birthDate", "invalid"), ("R.language", "invalid")]
    # A value found valid before is remembered; a broken one is still refused after it.
    assert validation.validate_resource({**P, "gender": "male"}, "R") == []
    assert validation.validate_resource({**P, "gender": "male "}, "R")[0].expression == "R.gender"


@pytest.mark.parametrize(("data", "ok"), [("QUFB", True), ("QUFB\nQUFB", True), (" QUFBQUFB ", True), ("QUF", False),
                                          ("QUFBQ", False), ("QU FB", False), ("QUF!", False), ("", False)])
def test_base64_is_the_specifications_expression(data: str, ok: bool) -> None:
    doc = {"resourceType": "Binary", "contentType": "text/plain", "data": data}
    assert (validation.validate_resource(doc, "R") == []) is ok
    assert (re.fullmatch(r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+", data) is not None) is ok
