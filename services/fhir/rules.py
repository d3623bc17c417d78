"""The FHIR R4 rules that need the specification's own definitions: bindings, invariants, no empty elements.

``structure.py`` checks structure and types; it does not know which codes a
required binding allows, nor the invariants (``per-1``: a period does not end
before it starts). Those come from the specification itself: ``specbuild.py``
reduces the official 4.0.1 definitions to a table at setup time, and this
module loads it once per process and checks resources against it:

- **Required bindings** (``Patient.gender``, ``Immunization.status``, every
  required binding whose value set the definitions enumerate): a code outside
  the value set is an error. **Extensible** bindings not met are warnings.
- **Invariants**, the specification's FHIRPath expressions, evaluated by
  fhirpathpy, each compiled once per process. An invariant is evaluated on an
  instance only when an element it names is present: otherwise its answer is
  the one it gives on an empty instance, computed once at load time (an
  invariant that looks at the whole node, ``children()``, is always
  evaluated). Answers are memoised by the content they depend on, so the
  same unit of a Quantity or the same contained shape costs one evaluation.
  The invariants whose inputs differ in every record (``per-1``, the
  Condition and AllergyIntolerance status rules) have native forms
  (``natives.py``), bound to their exact expression and checked against
  fhirpathpy by the unit tests; a case a native leaves open goes to fhirpathpy.
- **ele-1, no empty elements**: an empty array, an empty object or a null
  where a value belongs is an error. Evaluated natively, as FHIRPath at every
  node would cost more than the rest of ingest; the unit tests check it
  against ``hasValue() or (children().count() > id.count())``.

Errors and warnings come back as ``Issue``s with the FHIRPath-style location,
the OperationOutcome issue code and the rule (``per-1``, ``binding``), and
never the submitted value (diagnostics may be logged).

fhirpathpy (2.2.4) compares two dateTime *elements* as strings, so
``10:00+08:00 <= 03:00Z`` was false; ``install_datetime_fix`` makes its
comparisons convert typed date, dateTime and time elements first, as it does
for literals (the unit tests compare periods across offsets and precisions).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from services.fhir.natives import Native, native_for

RULES_FILE = Path(os.environ.get("HEALTHGOV_FHIR_RULES", Path(__file__).parent / "generated" / "r4-rules.json"))
MEMO_LIMIT = 50_000  # answers kept per process; at most MEMO_MAX_KEY_BYTES each, so a few tens of MB
MEMO_MAX_KEY_BYTES = 1024
# The child elements an expression reads: names that start a path (not after a dot), not function names.
_IDENT = re.compile(r"(?<![.\w%$])([A-Za-z_][A-Za-z0-9_]*)(?!\w|\s*\()")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_WHOLE_NODE = re.compile(r"children\(\)|\$this|^\s*\(*\s*(hasValue|exists|empty|count|not|all|iif)\(")


class RulesMissing(RuntimeError):
    """The generated rule table is absent: ``make setup`` builds it from the FHIR definitions."""


@dataclass(frozen=True)
class Finding:
    """One broken rule: where (a trail of steps), what, and how bad."""

    trail: tuple[Any, ...] | None
    severity: str  # "error" | "warning"
    code: str  # OperationOutcome issue type
    rule: str  # the invariant key, or "binding", "ele-1"
    message: str


@dataclass(frozen=True)
class Binding:
    strength: str  # "required" | "extensible"
    url: str
    pairs: frozenset[tuple[str, str]]
    codes: frozenset[str]


@dataclass
class Invariant:
    key: str
    severity: str
    human: str
    expression: str
    fn: Callable[..., list[Any]]
    deps: tuple[str, ...]
    choices: tuple[str, ...]  # the deps that are choice elements (value -> valueQuantity)
    whole: bool
    shape_only: bool
    empty_ok: bool = True
    native: Native | None = None  # the invariant in Python (natives.py); it may leave a case to fhirpathpy


@dataclass(frozen=True)
class Element:
    child: str | None
    binding: Binding | None
    invariants: tuple[Invariant, ...]


def install_datetime_fix() -> None:
    """Make fhirpathpy compare typed date/dateTime/time elements as instants, not strings."""
    from fhirpathpy.engine.invocations import equality
    from fhirpathpy.engine.nodes import ResourceNode

    if getattr(equality.typecheck, "_healthgov", False):
        return
    original = equality.typecheck

    def temporal(items: list[Any]) -> str | None:
        if len(items) == 1 and isinstance(items[0], ResourceNode) and items[0].path in _TEMPORAL:
            data = items[0].data
            return data if isinstance(data, str) else None
        return None

    def convert(items: list[Any]) -> list[Any]:
        return [i.convert_data() if isinstance(i, ResourceNode) and i.path in _TEMPORAL else i for i in items]

    def typecheck(a: list[Any], b: list[Any]) -> Any:
        x, y = temporal(a), temporal(b)
        if x is not None and y is not None and _same_shape(x, y):
            return original(a, b)  # same precision and offset: the strings sort as the instants do
        return original(convert(a), convert(b))

    typecheck._healthgov = True  # type: ignore[attr-defined]
    equality.typecheck = typecheck


_TEMPORAL = frozenset({"date", "dateTime", "time"})
_OFFSET = re.compile(r"(Z|[+-]\d\d:\d\d)$")


def _same_shape(x: str, y: str) -> bool:
    """Two ISO 8601 values whose string order is their time order: same length, same offset (or none).

    Converting is exact but slow (fhirpathpy parses with dateutil, about half a
    millisecond a comparison); hospitals' systems write one format and one
    offset, so nearly every comparison takes this path.
    """
    if len(x) != len(y):
        return False
    if len(x) <= 10 or "T" not in x:
        return True
    mx, my = _OFFSET.search(x), _OFFSET.search(y)
    return mx is not None and my is not None and mx.group(0) == my.group(0) and mx.start() == my.start()


def _has_value(inputs: list[Any]) -> bool:
    """FHIRPath ``hasValue()`` (fhirpathpy lacks it): a single primitive with a value."""
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict | list)


OPTIONS = {"userInvocationTable": {"hasValue": {"fn": _has_value}}}


def _relevant(node: dict[str, Any], deps: tuple[str, ...], choices: tuple[str, ...]) -> list[tuple[str, Any]]:
    """The node's elements an invariant reads: ``deps`` by name or as ``_name``, choice ``deps`` by prefix."""
    out = [(key, node[key]) for dep in deps for key in (dep, "_" + dep) if key in node]
    if choices:
        for key, value in node.items():
            name = key[1:] if key[:1] == "_" else key
            for dep in choices:
                if name.startswith(dep) and name[len(dep):len(dep) + 1].isupper():
                    out.append((key, value))
                    break
    return out


_PRESENCE_TERM = re.compile(r"[A-Za-z_]\w*\s*\.\s*(exists|empty|hasValue)\(\)(\s*\.\s*not\(\))?")
_BOOLEAN_GLUE = re.compile(r"\b(or|and|implies|xor)\b|!=|=|\(|\)")


def _shape_only(expression: str) -> bool:
    """Whether an invariant's answer depends only on which of its elements are present.

    True for expressions made only of ``element.exists()``, ``.empty()`` or
    ``.hasValue()`` terms joined by boolean operators:
    ``data.empty() or contentType.exists()``. Their answers are memoised by the
    names present, not by content.
    """
    rest = _BOOLEAN_GLUE.sub(" ", _PRESENCE_TERM.sub(" T ", expression)).split()
    return bool(rest) and set(rest) == {"T"}


class RuleSet:
    """The loaded table: what to check at each type and backbone path, value sets as frozensets."""

    def __init__(self, table: dict[str, Any]) -> None:
        from fhirpathpy import compile as fp_compile
        from fhirpathpy.engine.nodes import ResourceNode
        from fhirpathpy.models import models

        install_datetime_fix()
        self._node = ResourceNode.create_node
        model = models["r4"]
        compiled: dict[str, Callable[..., list[Any]]] = {}
        choice_names = frozenset(table.get("choices", ()))
        self.skipped: list[str] = []  # invariants fhirpathpy cannot compile (named by key)

        def invariant(path: str, key: str, severity: str, human: str, expr: str) -> Invariant | None:
            fn = compiled.get(expr)
            if fn is None:
                try:
                    fn = compiled[expr] = fp_compile(expr, model, OPTIONS)
                except Exception:
                    self.skipped.append(key)
                    return None
            bare = _STRING.sub("''", expr)
            deps = tuple(sorted(set(_IDENT.findall(bare))))
            inv = Invariant(key, severity, human, expr, fn, deps, tuple(d for d in deps if d in choice_names),
                            bool(_WHOLE_NODE.search(bare)), _shape_only(expr), native=native_for(key, expr))
            try:
                inv.empty_ok = _passes(fn(self._node({}, path), None))
            except Exception:
                inv.empty_ok = True
            return inv

        valuesets: dict[str, Binding] = {}

        def binding(spec: list[str] | None) -> Binding | None:
            if not spec:
                return None
            strength, url = spec
            pairs = frozenset((s, c) for s, c in table["valuesets"][url])
            return valuesets.setdefault(f"{strength}|{url}", Binding(strength, url, pairs,
                                                                    frozenset(c for _, c in pairs)))

        self.invariants: dict[str, tuple[Invariant, ...]] = {}
        for path, items in table["invariants"].items():
            found = [invariant(path, *item) for item in items]
            self.invariants[path] = tuple(i for i in found if i is not None)
        raw: dict[str, dict[str, Element]] = {}
        for path, keys in table["elements"].items():
            raw[path] = {}
            for key, (child, bind, own) in keys.items():
                typed = {i[0] for i in table["invariants"].get(child or "", [])}
                invs = [invariant(child or path, *item) for item in own if item[0] not in typed]
                raw[path][key] = Element(child, binding(bind), tuple(i for i in invs if i is not None))
        self.elements = _prune(raw, self.invariants)
        self._memo: dict[tuple[int, bytes], bool] = {}  # (invariant, what it reads) -> passes

    @classmethod
    def load(cls, path: Path = RULES_FILE) -> RuleSet:
        try:
            table = orjson.loads(path.read_bytes())
        except FileNotFoundError as exc:
            raise RulesMissing(f"{path} is missing: run make setup (deploy/setup.sh builds it)") from exc
        return cls(table)

    # --- checking -----------------------------------------------------------------

    def check(self, resource: dict[str, Any]) -> list[Finding]:
        """Every binding and invariant finding in one resource (contained resources included)."""
        out: list[Finding] = []
        rtype = resource.get("resourceType")
        if isinstance(rtype, str):
            self._walk(resource, rtype, None, out)
        return out

    def _walk(self, node: dict[str, Any], path: str, trail: Any, out: list[Finding]) -> None:
        invs = self.invariants.get(path)
        if invs:
            self._evaluate(node, path, invs, trail, out)
        rules = self.elements.get(path)
        if not rules:
            return
        for key, value in node.items():
            rule = rules.get(key)
            if rule is None:
                continue
            if type(value) is list:
                for i, item in enumerate(value):
                    self._element(rule, item, ((trail, key), i), out)
            else:
                self._element(rule, value, (trail, key), out)

    def _element(self, rule: Element, value: Any, trail: Any, out: list[Finding]) -> None:
        if rule.binding is not None:
            self._bind(rule.binding, value, trail, out)
        if type(value) is dict:
            if rule.invariants:
                self._evaluate(value, rule.child or "", rule.invariants, trail, out)
            child = rule.child
            if child == "*":
                child = value.get("resourceType")
            if type(child) is str:
                self._walk(value, child, trail, out)

    def _bind(self, b: Binding, value: Any, trail: Any, out: list[Finding]) -> None:
        kind = type(value)
        if kind is str:
            ok = value in b.codes
        elif kind is dict:
            codings = value.get("coding") if "coding" in value else [value] if "code" in value else None
            if codings is None:  # text only: a concept no code system holds
                ok = b.strength != "required"
            else:
                ok = any(type(c) is dict and (c.get("system"), c.get("code")) in b.pairs for c in codings)
        else:
            return
        if ok:
            return
        if b.strength == "required":
            out.append(Finding(trail, "error", "code-invalid", "binding",
                               f"the code is not in the value set {b.url}, which this element requires"))
        else:
            out.append(Finding(trail, "warning", "code-invalid", "binding-extensible",
                               f"no code from the value set {b.url} (extensible binding)"))

    def _evaluate(self, node: dict[str, Any], path: str, invs: tuple[Invariant, ...], trail: Any,
                  out: list[Finding]) -> None:
        for inv in invs:
            if inv.native is not None:
                decided = inv.native(node)
                if decided is not None:
                    if not decided:
                        out.append(Finding(trail, inv.severity, "invariant", inv.key, f"{inv.key}: {inv.human}"))
                    continue
            relevant = node if inv.whole else _relevant(node, inv.deps, inv.choices)
            if not relevant:
                ok = inv.empty_ok
            else:
                shape = inv.shape_only and not inv.whole
                key = (id(inv), "|".join(k for k, _ in relevant).encode() if shape else orjson.dumps(relevant))
                cached = self._memo.get(key)
                if cached is None:
                    try:
                        cached = _passes(inv.fn(self._node(node, path or None), None))
                    except Exception:
                        cached = True
                    if len(key[1]) <= MEMO_MAX_KEY_BYTES:  # large content rarely repeats: not kept
                        if len(self._memo) >= MEMO_LIMIT:
                            self._memo.clear()
                        self._memo[key] = cached
                ok = cached
            if not ok:
                out.append(Finding(trail, inv.severity, "invariant", inv.key, f"{inv.key}: {inv.human}"))


def _passes(result: list[Any]) -> bool:
    """An invariant fails only when it evaluates to false (empty is not a failure)."""
    return not (len(result) == 1 and result[0] is False)


def _prune(raw: dict[str, dict[str, Element]], invariants: dict[str, tuple[Invariant, ...]],
           ) -> dict[str, dict[str, Element]]:
    """Keep only the elements under which something is checked (the walk skips the rest)."""
    useful: set[str] = {p for p, invs in invariants.items() if invs}
    changed = True
    while changed:
        changed = False
        for path, keys in raw.items():
            if path in useful:
                continue
            if any(e.binding or e.invariants or e.child == "*" or (e.child in useful) for e in keys.values()):
                useful.add(path)
                changed = True
    return {path: {k: e for k, e in keys.items()
                   if e.binding or e.invariants or e.child == "*" or e.child in useful}
            for path, keys in raw.items() if path in useful}


_rules: RuleSet | None = None


def rules() -> RuleSet:
    """This process's rule set, loaded and compiled on first use."""
    global _rules
    if _rules is None:
        _rules = RuleSet.load()
    return _rules
