"""A small SQL on FHIR v2 ViewDefinition runner: the reference for the analytic store's flattening.

The store's flattening is declared as one ViewDefinition per resource type in
``views/*.json`` (https://sql-on-fhir.org/ig/latest/): which FHIR elements
become which columns, and nothing else. ``flatten.py`` is the fast path the
store's update runs (plain dictionary reads, no FHIRPath engine);
``tests/unit/records/test_analytics_viewdefs.py`` runs these views over the
shipped Synthea fixtures through this module and asserts the same rows, so
the code cannot drift from the declared contract. Any SQL on FHIR runner
(Pathling, a warehouse's) can run the same views over the same resources.

This runner implements only what the shipped views use, and says so loudly
on anything else rather than guessing: ``select`` with ``column``, nested
``select``, ``forEach``, ``forEachOrNull`` and ``unionAll``; the view's
``where``; the spec's ``getResourceKey()`` and ``getReferenceKey([type])``.
Not ``constant``, ``repeat``, ``collection: true``. FHIRPath is fhirpathpy
with the R4 model (so ``onset.ofType(dateTime)`` picks a choice element);
expressions are compiled once per process (its parser recovers from some
malformed expressions, ``gender.(`` reading as ``gender``, so a wrong path is
caught by the equality test, not always here). It is the reference, not the hot
path: ten to twenty times slower than ``flatten.rows`` (the fixtures' 7,504
resources of flattened types: 0.1-0.25 s native, 1.8-2.5 s through the views).

``check_deidentified`` is the second half of the contract: no path of a view
may name an element that carries a name, an identifier, contact details,
free text, a display string, an address below the district or a raw id.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from services.records.analytics import flatten

VIEWS_DIR = Path(__file__).with_name("views")

_VIEW_KEYS = frozenset({"resourceType", "id", "url", "identifier", "name", "title", "meta", "status", "experimental",
                        "publisher", "contact", "description", "useContext", "copyright", "fhirVersion", "resource",
                        "select", "where"})
_SELECT_KEYS = frozenset({"column", "select", "forEach", "forEachOrNull", "unionAll"})
_COLUMN_KEYS = frozenset({"name", "path", "description", "type", "tag", "collection"})

# Elements no analytic view may read: they hold who the patient is or what someone wrote about them.
# ``id`` and ``reference`` too: the only keys a view may give are getResourceKey()/getReferenceKey(),
# which a runner joins on and the store replaces with its keyed pseudonym.
FORBIDDEN = frozenset({
    "name", "identifier", "text", "div", "telecom", "line", "postalCode", "display", "note", "comment",
    "contact", "photo", "extension", "modifierExtension", "contained", "valueString", "id", "reference",
})
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'")
_IDENTIFIER = re.compile(r"`([^`]*)`|[A-Za-z_][A-Za-z0-9_]*")


class ViewError(ValueError):
    """A ViewDefinition this runner cannot (or must not) run, or a resource a column cannot hold."""


def _resource_key(inputs: list[Any]) -> list[Any]:
    """``getResourceKey()``: the resource's id, the key this runner gives a resource."""
    return [r["id"] for r in inputs if isinstance(r, dict) and isinstance(r.get("id"), str)]


def _reference_key(inputs: list[Any], rtype: Any = None) -> list[Any]:
    """``getReferenceKey([type])``: the id a literal reference points at, if of ``type`` when one is given."""
    want = getattr(rtype, "name", None)
    out = []
    for ref in inputs:
        value = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(value, str) or "/" not in value:
            continue
        kind, _, key = value.rstrip("/").rpartition("/")
        kind = kind.rpartition("/")[2]
        if key and (want is None or kind == want):
            out.append(key)
    return out


_OPTIONS = {"returnRawData": True, "userInvocationTable": {
    "getResourceKey": {"fn": _resource_key, "arity": {0: []}},
    "getReferenceKey": {"fn": _reference_key, "arity": {0: [], 1: ["TypeSpecifier"]}},
}}


@cache
def _compiled(expression: str) -> Callable[[Any], list[Any]]:
    from fhirpathpy import compile as fp_compile
    from fhirpathpy.models import models

    try:
        return fp_compile(expression, models["r4"], _OPTIONS)
    except Exception as exc:  # fhirpathpy raises bare Exceptions on syntax errors
        raise ViewError(f"FHIRPath expression {expression!r} does not parse: {exc}") from exc


def _eval(expression: str, node: Any) -> list[Any]:
    """The expression's result on ``node`` (a resource or a node from an earlier result), nodes kept typed."""
    try:
        return list(_compiled(expression)(node))
    except ViewError:
        raise
    except Exception as exc:
        raise ViewError(f"FHIRPath expression {expression!r} failed: {exc}") from exc


def _value(node: Any) -> Any:
    from fhirpathpy.engine.util import get_data

    return get_data(node)


def _paths(select: dict[str, Any]) -> Iterable[str]:
    for key in ("forEach", "forEachOrNull"):
        if key in select:
            yield select[key]
    for column in select.get("column", []):
        yield column.get("path", "")
    for sub in itertools.chain(select.get("select", []), select.get("unionAll", [])):
        yield from _paths(sub)


def _names(select: dict[str, Any]) -> list[str]:
    """The columns a selection gives, in the spec's order: its columns, its selects', its unionAll's."""
    names = [c["name"] for c in select.get("column", [])]
    for sub in select.get("select", []):
        names += _names(sub)
    if select.get("unionAll"):
        names += _names(select["unionAll"][0])
    return names


def _check_select(select: Any, where: str) -> None:
    if not isinstance(select, dict):
        raise ViewError(f"{where}: a selection must be an object")
    unknown = set(select) - _SELECT_KEYS
    if unknown:
        raise ViewError(f"{where}: {', '.join(sorted(unknown))} not supported by this runner")
    if "forEach" in select and "forEachOrNull" in select:
        raise ViewError(f"{where}: forEach and forEachOrNull together")
    for column in select.get("column", []):
        if not isinstance(column, dict) or set(column) - _COLUMN_KEYS:
            raise ViewError(f"{where}: a column may only have {', '.join(sorted(_COLUMN_KEYS))}")
        if not isinstance(column.get("name"), str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", column["name"]):
            raise ViewError(f"{where}: a column needs a name of letters, digits and underscores")
        if not isinstance(column.get("path"), str):
            raise ViewError(f"{where}: column {column['name']} needs a path")
        if column.get("collection", False) is not False:
            raise ViewError(f"{where}: column {column['name']}: collection columns not supported by this runner")
    for i, sub in enumerate(select.get("select", [])):
        _check_select(sub, f"{where}.select[{i}]")
    branches = select.get("unionAll", [])
    for i, sub in enumerate(branches):
        _check_select(sub, f"{where}.unionAll[{i}]")
    if branches and any(_names(b) != _names(branches[0]) for b in branches):
        raise ViewError(f"{where}: unionAll branches give different columns (names and order must match)")


def check(view: Any) -> dict[str, Any]:
    """``view`` if this runner can run it as the spec says; else a ``ViewError`` naming what it cannot."""
    if not isinstance(view, dict) or view.get("resourceType") != "ViewDefinition":
        raise ViewError("not a ViewDefinition")
    unknown = set(view) - _VIEW_KEYS
    if unknown:
        raise ViewError(f"ViewDefinition.{', '.join(sorted(unknown))} not supported by this runner")
    if not isinstance(view.get("resource"), str) or not isinstance(view.get("select"), list) or not view["select"]:
        raise ViewError("a ViewDefinition needs a resource and a select")
    for i, select in enumerate(view["select"]):
        _check_select(select, f"select[{i}]")
    names = [n for s in view["select"] for n in _names(s)]
    if len(names) != len(set(names)):
        raise ViewError("column names must be unique across the view")
    for w in view.get("where", []):
        if not isinstance(w, dict) or not isinstance(w.get("path"), str):
            raise ViewError("each where needs a path")
    return view


def check_deidentified(view: dict[str, Any]) -> None:
    """Raise ``ViewError`` if any path of ``view`` names an element of ``FORBIDDEN``.

    Read token by token (string literals skipped, `delimited` names
    unquoted), so ``name``, ``address.line`` or ``code.coding.display`` are
    caught wherever they sit: in a column, a forEach or a where.
    """
    paths = [p for s in view.get("select", []) for p in _paths(s)] + [w.get("path", "") for w in view.get("where", [])]
    for path in paths:
        for match in _IDENTIFIER.finditer(_STRING_LITERAL.sub("''", path)):
            token = match.group(1) if match.group(1) is not None else match.group(0)
            if token in FORBIDDEN:
                raise ViewError(f"path {path!r} reads {token!r}, which an analytic view must not")


def _rows(select: dict[str, Any], node: Any) -> list[dict[str, Any]]:
    """The spec's selection step: the focus (or each forEach item), its columns, crossed with its sub-selections."""
    if "forEach" in select or "forEachOrNull" in select:
        foci: list[Any] = _eval(select.get("forEach") or select["forEachOrNull"], node)
        if not foci and "forEachOrNull" in select:
            return [dict.fromkeys(_names(select))]  # one row of nulls, sub-selections included
    else:
        foci = [node]
    out: list[dict[str, Any]] = []
    for focus in foci:
        parts: list[list[dict[str, Any]]] = []
        if select.get("column"):
            row = {}
            for column in select["column"]:
                values = _eval(column["path"], focus)
                if len(values) > 1:
                    raise ViewError(f"column {column['name']} ({column['path']!r}) gave {len(values)} values")
                row[column["name"]] = _value(values[0]) if values else None
            parts.append([row])
        parts += [_rows(sub, focus) for sub in select.get("select", [])]
        if select.get("unionAll"):
            parts.append([r for sub in select["unionAll"] for r in _rows(sub, focus)])
        for combo in itertools.product(*parts):
            out.append({k: v for part in combo for k, v in part.items()})
    return out


def run(view: dict[str, Any], resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows ``view`` gives for one resource (none if it is of another type or a where is not true)."""
    if resource.get("resourceType") != view["resource"]:
        return []
    for w in view.get("where", []):
        result = [_value(v) for v in _eval(w["path"], resource)]
        if result not in ([True], [False], []):
            raise ViewError(f"where {w['path']!r} is not a boolean")
        if result != [True]:
            return []
    parts = [_rows(select, resource) for select in view["select"]]
    return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*parts)]


def column_names(view: dict[str, Any]) -> list[str]:
    """The view's columns in the order it declares them."""
    return [n for s in view["select"] for n in _names(s)]


@cache
def shipped() -> dict[str, dict[str, Any]]:
    """The shipped views by resource type, each checked runnable and de-identified."""
    views: dict[str, dict[str, Any]] = {}
    for path in sorted(VIEWS_DIR.glob("*.json")):
        view = check(json.loads(path.read_text()))
        check_deidentified(view)
        if view["resource"] in views:
            raise ViewError(f"two views for {view['resource']}")
        views[view["resource"]] = view
    return views


def person(patient: dict[str, Any] | None, pseudonym: int, research_opt_out: bool) -> flatten.Person:
    """``flatten.person_of`` through the Patient view: birth date, sex, first plausible district (else city).

    The opt-out is not in the Patient resource: it comes from the patient's
    Consents as records' policy reads them, so it is passed in as there.
    """
    rows = run(shipped()["Patient"], patient) if patient else []
    first = rows[0] if rows else {}
    return flatten.Person(person=pseudonym, birth=flatten.full_date(first.get("birth_date")),
                          sex=flatten.sex_of(first.get("gender")),
                          district=flatten.district_of((r["district"], r["city"]) for r in rows),
                          research_opt_out=research_opt_out)


def facts(who: flatten.Person, resources: Iterable[tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
    """``flatten.rows`` through the views: the same post-processing on what the views select.

    Per resource: the clinical date is the first ``date_*`` column, in the
    order the view declares them, that holds a full date; the codings are the
    view's (system, code) rows, kept if plausible (``flatten.plausible_codings``).
    """
    views = shipped()
    out: list[dict[str, Any]] = []
    for resource, hospital in resources:
        rtype = resource.get("resourceType")
        if rtype == "Patient" or rtype not in views:
            continue
        view = views[rtype]
        rows = run(view, resource)
        if not rows:
            continue
        dates = [n for n in column_names(view) if n.startswith("date_")]
        when = flatten.clinical_date(rows[0][n] for n in dates)  # resource-level columns: equal on every row
        if when is None:
            continue
        codings = flatten.plausible_codings((r["system"], r["code"]) for r in rows)
        out.extend(flatten.fact_rows(who, rtype, when, codings, hospital))
    return out
