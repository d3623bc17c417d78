"""FHIR R4 structure and types, checked against a table made from the specification's StructureDefinitions.

Every resource ingest receives is checked for its shape: each JSON key is an
element of its type (or the ``_name`` extension sibling of a primitive one),
an element that repeats is an array and one that does not is not, required
elements are there, at most one type of a choice element ``value[x]`` is
given, primitive values have their JSON type and match the specification's
regular expression (dates are also real calendar dates), and contained and
nested resources (``contained``, ``Bundle.entry.resource``) are of a known
resource type and are checked the same way.

Why not the fhir.resources models, which did this before: building a pydantic
model for every resource and every nested element cost about 150 µs of CPU a
resource, over half of ingest's per-resource work, to check what a walk over
the parsed JSON with one dictionary look-up per key checks in a fraction of
that. The table (``specbuild.structure``) comes from the same published 4.0.1
definitions as the rule table, so no element is typed by hand. The unit tests
run both over every shipped fixture and a set of systematically broken
resources: everything the models refused is refused here too. Where the
models were lax, this is stricter, as the specification is: a boolean is a
JSON ``true``/``false`` (not ``"true"`` or ``1``), an integer a JSON integer,
a decimal a JSON number, a date a string, a ``uri`` holds no whitespace, a
contained resource has a ``resourceType``, and Python spellings of element
names (``class_fhir``, ``fhir_comments``) are not elements.

Emptiness (``[]``, ``{}``, ``null``) is ele-1's: the walk reports where it
finds it apart from the structural problems (``check(empty=...)``), because
``check_resource`` answers it with its own rule after the structure. A null
inside an array of complex elements is a structural problem: it has no
meaning there.

Diagnostics name the element path and never echo the submitted value. An
element's problem has the OperationOutcome issue code ``invalid``, as the
models' had (quality reports and metrics count refusals by it); a resource
that is not an object, has no ``resourceType`` or an unknown one keeps
``structure``, ``required`` and ``not-supported``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

from services.fhir.rules import RULES_FILE, RulesMissing

Problem = tuple[str, str, str]  # (element path, what is wrong, OperationOutcome issue code)
MAX_PROBLEMS = 20
_INT32 = (-(2 ** 31), 2 ** 31 - 1)


def _date_ok(value: str) -> bool:
    """A full date (YYYY-MM-DD…) is a real calendar date; partial ones the regex already decided."""
    if len(value) < 10:
        return True
    try:
        datetime.date.fromisoformat(value[:10])
    except ValueError:
        return False
    return True


GOOD_LIMIT = 50_000  # valid strings remembered per regex-checked type; codes, systems and units repeat
GOOD_MAX_LENGTH = 256  # longer ones are not kept: they rarely repeat, and the set must stay small


def _string_check(pattern: str | None, kind: str) -> Callable[[Any], str | None]:
    """A checker for a primitive carried as a JSON string: its type, its regex, and for dates the calendar.

    Values already found valid are remembered (a bounded set per type): the
    same code, code system and unit come in nearly every resource, and a set
    look-up costs a tenth of the regular expression. The set is bounded in
    entries and in their length (at most ``GOOD_LIMIT`` × ``GOOD_MAX_LENGTH``
    characters), and it is the only state a check keeps between calls: the
    walk itself carries everything in its arguments, so threads may share it.
    """
    if kind in ("string", "markdown", "xhtml") or pattern is None:
        # The specification's [ \r\n\t\S]+ allows every character: what it says is "not empty".
        def plain(value: Any) -> str | None:
            if type(value) is not str:
                return f"expected a {kind} (a JSON string)"
            return None if value else f"a {kind} may not be empty"
        return plain
    regex = re.compile(pattern)
    temporal = kind in ("date", "dateTime", "instant")
    good: set[str] = set()

    def matched(value: Any) -> str | None:
        if type(value) is not str:
            return f"expected a {kind} (a JSON string)"
        if value in good:
            return None
        if regex.fullmatch(value) is None or (temporal and not _date_ok(value)):
            return f"not a valid {kind}"
        if len(value) <= GOOD_MAX_LENGTH:
            if len(good) >= GOOD_LIMIT:
                good.clear()
            good.add(value)
        return None
    return matched


def _base64(value: Any) -> str | None:
    if type(value) is not str:
        return "expected a base64Binary (a JSON string)"
    if len(value) % 4 == 0 and _BASE64_UNBROKEN.fullmatch(value):  # no whitespace: the usual case, 4x faster
        return None
    return None if _BASE64.fullmatch(value) else "not valid base64Binary"


# The specification's (\s*([0-9a-zA-Z+/=]){4}\s*)+, written without nested repetition (documents run to MBs);
# without whitespace it means: whole groups of four of these characters.
_BASE64 = re.compile(r"\s*(?:[0-9a-zA-Z+/=]{4}\s*)+")
_BASE64_UNBROKEN = re.compile(r"[0-9a-zA-Z+/=]+")


def _boolean(value: Any) -> str | None:
    return None if type(value) is bool else "expected a boolean (JSON true or false)"


def _decimal(value: Any) -> str | None:
    return None if type(value) in (int, float) else "expected a decimal (a JSON number)"


def _integer(low: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if type(value) is not int:
            return "expected an integer (a JSON number without a fraction)"
        if value < low or value > _INT32[1]:
            return f"an integer from {low} to {_INT32[1]} is expected"
        return None
    return check


def _checkers(primitives: dict[str, str | None]) -> dict[str, Callable[[Any], str | None]]:
    out: dict[str, Callable[[Any], str | None]] = {}
    for kind, pattern in primitives.items():
        out[kind] = _string_check(pattern, kind)
    out.update(boolean=_boolean, decimal=_decimal, integer=_integer(_INT32[0]), unsignedInt=_integer(0),
               positiveInt=_integer(1), base64Binary=_base64)
    return out


Checker = Callable[[Any], "str | None"]
Spec = tuple["Checker | None", "str | None", bool, bool]  # (primitive checker, child path, repeats, required)
# A primitive's extension sibling (``_birthDate``): an Element, that is an id and extensions.
_ELEMENT = {"id": ["string", None, False, False], "extension": [None, "Extension", True, False]}
Trail = Any  # (parent trail, key or index), or the resource's own location as a string: spelled only on error
Finds = tuple[list[tuple[dict[str, Any], Trail]], list[dict[str, Any]]]  # (reference holders, coded objects)


def spell(trail: Trail) -> str:
    """The FHIRPath-style location of a trail: ``Patient.name[0].given``."""
    parts: list[str] = []
    while type(trail) is tuple:
        trail, step = trail
        parts.append(f"[{step}]" if type(step) is int else f".{step}")
    return str(trail) + "".join(reversed(parts))


class Structure:
    """The loaded structure table: elements per path, choices, primitive checkers, resource types."""

    def __init__(self, table: dict[str, Any]) -> None:
        checkers = _checkers(table["primitives"])
        paths = {**table["paths"], "Element": table["paths"].get("Element", _ELEMENT)}
        self.paths: dict[str, dict[str, Spec]] = {
            path: {key: (checkers[kind] if kind else None, child, many, required)
                   for key, (kind, child, many, required) in keys.items()}
            for path, keys in paths.items()}
        self.required: dict[str, tuple[str, ...]] = {
            path: tuple(k for k, spec in keys.items() if spec[3]) for path, keys in self.paths.items()}
        self.choices: dict[str, tuple[tuple[str, bool, tuple[str, ...]], ...]] = {
            path: tuple((name, req, tuple(keys)) for name, req, keys in items)
            for path, items in table["choices"].items()}
        self.resources = frozenset(table["resources"])

    @classmethod
    def load(cls) -> Structure:
        import orjson

        try:
            table = orjson.loads(RULES_FILE.read_bytes())
        except FileNotFoundError as exc:
            raise RulesMissing(f"{RULES_FILE} is missing: run make setup (deploy/setup.sh builds it)") from exc
        if "structure" not in table:
            raise RulesMissing(f"{RULES_FILE} predates the structure table: run make setup")
        return cls(table["structure"])

    def check(self, doc: Any, where: str, empty: list[str] | None = None,
              holders: list[tuple[dict[str, Any], Trail]] | None = None,
              coded: list[dict[str, Any]] | None = None) -> list[Problem]:
        """The structural problems of one resource, at most ``MAX_PROBLEMS``; ``where`` prefixes each path.

        ``empty`` receives the path of every empty element (ele-1: ``[]``,
        ``{}``, an object with only an ``id``, a null that no ``_name``
        array pairs with): the same walk finds them at almost no cost, where a
        separate one (or a regular expression over the JSON) cost more than
        the structure itself. ``holders`` receives every object holding a
        ``reference`` string, with its trail (``spell`` names it): ingest
        rewrites references without a walk of its own. ``coded`` receives every
        object holding a ``code`` string below the resource's root, except in
        its own ``meta`` (a contained resource's root and meta count): the
        Codings (and Quantities) whose codes ingest's sensitivity labels look
        up (``LabelTable.labels_of``). Locations are kept as trails of steps
        and spelled only for what is reported.
        """
        out: list[tuple[Trail, str, str]] = []
        hollow: list[Trail] = []
        finds = ([] if holders is None else holders, [] if coded is None else coded)
        self._resource(doc, where, out, hollow, finds)
        if empty is not None:
            empty.extend(spell(t) for t in hollow[:MAX_PROBLEMS])
        return [(spell(t), what, code) for t, what, code in out[:MAX_PROBLEMS]]

    def _resource(self, doc: Any, trail: Trail, out: list[Any], empty: list[Trail], finds: Finds) -> None:
        if type(doc) is not dict:
            out.append((trail, "expected a resource (a JSON object)", "structure"))
            return
        rtype = doc.get("resourceType")
        if type(rtype) is not str:
            out.append(((trail, "resourceType"), "resourceType is missing", "required"))
        elif rtype not in self.resources:
            out.append(((trail, "resourceType"), "unknown resourceType", "not-supported"))
        else:
            self._node(doc, rtype, trail, out, empty, finds, resource=True)

    def _node(self, node: dict[str, Any], path: str, trail: Trail, out: list[Any], empty: list[Trail],
              finds: Finds, resource: bool = False) -> None:
        elements = self.paths[path]
        for key, value in node.items():
            spec = elements.get(key)
            if spec is None:
                if key == "resourceType" and resource:
                    continue
                base = elements.get(key[1:]) if key[:1] == "_" else None
                if base is not None and base[0] is not None:
                    self._extension_sibling(node, key, value, base[2], (trail, key), out, empty, finds)
                else:
                    out.append(((trail, key), f"{key} is not an element of {path}", "invalid"))
                continue
            check, child, many, _ = spec
            if value is None:
                empty.append((trail, key))
            elif many:
                if type(value) is not list:
                    out.append(((trail, key), "expected an array (the element repeats)", "invalid"))
                    continue
                at = (trail, key)
                if not value:
                    empty.append(at)
                elif check is not None:
                    if None in value and type(node.get("_" + key)) is not list:
                        empty.append(at)  # a null in a primitive array only lines up with its _key partner
                    for i, item in enumerate(value):
                        if item is not None:
                            problem = check(item)
                            if problem is not None:
                                out.append(((at, i), problem, "invalid"))
                else:
                    for i, item in enumerate(value):
                        if item is None:  # a null in an array of complex elements has no meaning
                            out.append(((at, i), "null is not an element", "invalid"))
                        else:
                            self._complex(item, child, (at, i), out, empty, finds)
            elif type(value) is list:
                out.append(((trail, key), "expected a single value, not an array (the element does not repeat)",
                            "invalid"))
            elif check is not None:
                problem = check(value)
                if problem is not None:
                    out.append(((trail, key), problem, "invalid"))
                elif key == "reference":
                    finds[0].append((node, trail))
                elif key == "code" and type(trail) is not str:
                    finds[1].append(node)
            elif key == "meta" and type(trail) is str:  # the resource's own meta: its codes are not labelled
                self._complex(value, child, (trail, key), out, empty, (finds[0], []))
            else:
                self._complex(value, child, (trail, key), out, empty, finds)
        for key in self.required[path]:
            if node.get(key) is None and node.get("_" + key) is None:
                out.append(((trail, key), f"{key} is required", "invalid"))
        for name, required, keys in self.choices.get(path, ()):
            given = sum(1 for k in keys if node.get(k) is not None or node.get("_" + k) is not None)
            if given > 1:
                out.append(((trail, f"{name}[x]"), f"{name}[x] takes one type, not {given}", "invalid"))
            elif required and not given:
                out.append(((trail, f"{name}[x]"), f"{name}[x] is required", "invalid"))

    def _complex(self, value: Any, child: str | None, at: Trail, out: list[Any], empty: list[Trail],
                 finds: Finds) -> None:
        if child == "*":
            self._resource(value, at, out, empty, finds)
        elif type(value) is not dict:
            out.append((at, f"expected a {child} (a JSON object)", "invalid"))
        else:
            if not value or (len(value) == 1 and "id" in value):
                empty.append(at)
            self._node(value, child or "", at, out, empty, finds)

    def _extension_sibling(self, node: dict[str, Any], key: str, value: Any, many: bool, at: Trail,
                           out: list[Any], empty: list[Trail], finds: Finds) -> None:
        """``_name``: the id and extensions of primitive ``name``, one per value when it repeats."""
        if value is None:
            empty.append(at)
        elif not many:
            self._complex(value, "Element", at, out, empty, finds)
        elif type(value) is not list:
            out.append((at, "expected an array (the element repeats)", "invalid"))
        else:
            if not value or (None in value and type(node.get(key[1:])) is not list):
                empty.append(at)
            for i, item in enumerate(value):
                if item is not None:
                    self._complex(item, "Element", (at, i), out, empty, finds)


_structure: Structure | None = None


def structure() -> Structure:
    """This process's structure table, loaded on first use."""
    global _structure
    if _structure is None:
        _structure = Structure.load()
    return _structure
