"""De-identification obligations applied to a response (docs/architecture.md §5), from one declarative rule set.

The rules live in ``deident_rules.toml`` (FHIRPath-style ``path -> method``, the
form Microsoft's FHIR-Tools-for-Anonymization uses): what each de-identification
level releases is data a privacy officer can read and review, not code. Two
levels:

- ``pseudonymize``: the patient becomes a per-recipient keyed pseudonym; names,
  identifiers, contact details, addresses below the state, device ids,
  attachments and every piece of free text go. Dates stay (research needs
  intervals).
- ``safe_harbor``: also dates reduced to the year, ages over 89 to "90+",
  documents gone: HIPAA Safe Harbor's 18 identifier classes (the rules file
  says which rule removes which class).
- ``aggregate_only`` is handled by the caller: counts, never rows.

The safe default is an allow-list: a text value no rule keeps is dropped, so a
note, a narrative, a comment or a string element of a resource type nobody
thought of cannot leak a name. Rules are matched once per distinct element path
and remembered, so the per-read cost is one walk of the resource.

Pure functions, no I/O: the caller supplies the recipient pseudonym.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

RULES_FILE = Path(__file__).with_name("deident_rules.toml")
AGE_GROUP_URL = "https://healthgov.example/age-group"
_DATE = re.compile(r"^(\d{4})(-\d{2}(-\d{2}([T ][0-9:.+\-Z]*)?)?)?$")
_SELECTOR = re.compile(r"^(?:nodesBy(Name|Type)\('([A-Za-z0-9_]+)'\)|([A-Z][A-Za-z]*))((?:\.[A-Za-z0-9_]+)*)$")
_EXTENSIONS = frozenset({"extension", "modifierExtension"})
# References to these are references to people: only the patient's own (as a pseudonym) is released.
_PERSON_TYPES = frozenset({"Patient", "RelatedPerson", "Person", "Group"})
_RELATIVE_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")
_UUID_REF = re.compile(r"^urn:uuid:([0-9a-fA-F-]{36})$")
_LOCAL_REF = re.compile(r"^#[A-Za-z0-9\-.]{0,64}$")
_METHODS = ("redact", "keep", "pseudonym", "generalize")
_GENERALIZATIONS = ("date", "year", "birth", "age", "zip3")
_DROP = object()
_MAX_MEMO = 50_000  # distinct element paths remembered per level; FHIR has far fewer


@dataclass(frozen=True)
class Rule:
    """One ``path -> method`` line of the rules file, compiled."""

    path: str
    method: str
    to: str | None
    rtype: str | None  # anchored at a resource ("Resource" = any type); None: anchored at element names
    names: frozenset[str]
    suffixes: tuple[str, ...]
    rest: tuple[str, ...]

    def applies(self, rtype: str, path: tuple[str, ...], floor: int) -> bool:
        """Does the rule select ``path`` or one of its ancestors, at or below index ``floor``?

        ``floor`` is the innermost extension on the path: what an extension holds is judged only by
        rules that select inside it, so keeping a CodeableConcept does not keep a text extension of
        it. Dropping more is always safe, so a ``redact`` rule needs no floor.
        """
        rest, n = self.rest, len(self.rest)
        if self.method == "redact":
            floor = 0
        if self.rtype is not None:
            return ((self.rtype == "Resource" or self.rtype == rtype) and len(path) >= n
                    and n - 1 >= floor and path[:n] == rest)
        names, suffixes = self.names, self.suffixes
        for i, name in enumerate(path):
            if (name in names or (suffixes and name.endswith(suffixes))) and i + n >= floor \
                    and path[i + 1:i + 1 + n] == rest:
                return True
        return False


@dataclass(frozen=True)
class Profile:
    """The ordered rules of one de-identification level."""

    name: str
    rules: tuple[Rule, ...]
    default_string: str
    default_other: str
    restricted_zip3: frozenset[str]


def _compile(spec: dict[str, Any], types: dict[str, Any]) -> Rule:
    path = spec["path"]
    m = _SELECTOR.match(path)
    if not m or spec.get("method") not in _METHODS or (spec["method"] == "generalize") != (spec.get("to") is not None) \
            or spec.get("to") not in (None, *_GENERALIZATIONS):
        raise ValueError(f"de-identification rule not understood: {spec!r}")
    rest = tuple(x for x in m.group(4).split(".") if x)
    if m.group(3):
        return Rule(path, spec["method"], spec.get("to"), m.group(3), frozenset(), (), rest)
    if m.group(1) == "Name":
        return Rule(path, spec["method"], spec.get("to"), None, frozenset({m.group(2)}), (), rest)
    if m.group(2) not in types:
        raise ValueError(f"de-identification rule names an unknown type: {path}")
    t = types[m.group(2)]
    return Rule(path, spec["method"], spec.get("to"), None, frozenset(t.get("names", ())),
                tuple(t.get("suffixes", ())), rest)


def load_profiles(path: Path = RULES_FILE) -> dict[str, Profile]:
    """Read and compile the rules file; a rule it cannot understand is an error at start, not a leak later."""
    doc = tomllib.loads(path.read_text())
    types, defaults = doc.get("types", {}), doc.get("defaults", {})
    zip3 = frozenset(doc.get("parameters", {}).get("restricted_zip3", ()))
    if not {defaults.get("string", "redact"), defaults.get("other", "keep")} <= {"redact", "keep"}:
        raise ValueError(f"de-identification defaults must be redact or keep: {defaults!r}")
    raw = doc.get("profile", {})

    def rules_of(name: str, seen: tuple[str, ...] = ()) -> list[Rule]:
        if name in seen:
            raise ValueError(f"de-identification profiles extend each other in a circle: {name}")
        prof = raw[name]
        own = [_compile(r, types) for r in prof.get("rule", [])]
        return own + (rules_of(prof["extends"], (*seen, name)) if prof.get("extends") else [])

    return {name: Profile(name, tuple(rules_of(name)), defaults.get("string", "redact"),
                          defaults.get("other", "keep"), zip3) for name in raw}


@lru_cache(maxsize=1)
def _profiles() -> dict[str, Profile]:
    return load_profiles()


class _Engine:
    """Applies one profile; remembers which rule decides each element path."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._memo: dict[str, tuple[str, str | None] | None] = {}

    def decide(self, key: str) -> tuple[str, str | None] | None:
        """``(method, to)`` of the first rule that applies to the element path ``key`` (``Type.a.b``)."""
        try:
            return self._memo[key]
        except KeyError:
            pass
        rtype, *rest = key.split(".")
        path = tuple(rest)
        floor = max((i for i, name in enumerate(path) if name in _EXTENSIONS), default=0)  # innermost
        found = next(((r.method, r.to) for r in self.profile.rules if r.applies(rtype, path, floor)), None)
        if len(self._memo) >= _MAX_MEMO:
            self._memo.clear()
        self._memo[key] = found
        return found


@dataclass
class _Ctx:
    patient_id: str | None
    pseudo: str | None
    today: date
    over_89: bool = False  # set by the ``birth`` generalization: the resource gets the age group
    capped_age: bool = False  # set by the ``age`` generalization: its Age gets the ">=" comparator


def _reference(value: str, ctx: _Ctx) -> Any:
    pid = ctx.patient_id
    if pid and value in (f"Patient/{pid}", f"urn:uuid:{pid}"):
        return f"Patient/{ctx.pseudo}" if ctx.pseudo else _DROP
    if _LOCAL_REF.match(value):
        return value
    m = _RELATIVE_REF.match(value)
    if m:
        return _DROP if m.group(1) in _PERSON_TYPES else value
    if _UUID_REF.match(value):
        return value  # an id from the sender's Bundle, not the patient's (checked above)
    return _DROP  # absolute URLs, conditional references, anything else


def _generalize(value: Any, to: str | None, ctx: _Ctx, zip3: frozenset[str]) -> Any:
    if to == "age":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _DROP
        if value > 89:
            ctx.capped_age = True
            return 90
        return value
    if not isinstance(value, str):
        return _DROP
    if to == "zip3":
        digits = value.strip()[:3]
        if len(digits) < 3 or not digits.isdigit():
            return _DROP
        return "000" if digits in zip3 else digits
    m = _DATE.match(value)
    if not m:
        return _DROP
    if to == "date":
        return value
    if to == "birth" and ctx.today.year - int(m.group(1)) > 89:
        ctx.over_89 = True
        return _DROP
    return m.group(1)


class Deidentifier:
    """One level of de-identification over whole resources."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.engine = _Engine(profile)

    def apply(self, resource: dict[str, Any], patient_id: str | None, pseudo: str | None,
              today: date | None = None) -> dict[str, Any]:
        ctx = _Ctx(patient_id, pseudo, today or date.today())
        out = self._resource(resource, ctx)
        if ctx.over_89 and out.get("resourceType") == "Patient":
            out["extension"] = [*out.get("extension", []), {"url": AGE_GROUP_URL, "valueString": "90+"}]
        return out

    def _resource(self, node: dict[str, Any], ctx: _Ctx) -> dict[str, Any]:
        rtype = node.get("resourceType")
        return self._object(node, rtype if isinstance(rtype, str) and rtype.isalnum() else "Resource", ctx)

    def _leaf(self, key: str, value: Any, ctx: _Ctx) -> Any:
        decided = self.engine.decide(key)
        if decided is None:
            method, to = (self.profile.default_string if isinstance(value, str) else self.profile.default_other), None
        else:
            method, to = decided
        if method == "keep":
            return value
        if method == "redact":
            return _DROP
        if method == "pseudonym":
            if not isinstance(value, str):
                return _DROP
            if key.endswith(".id"):  # the Patient's own id
                return ctx.pseudo if ctx.pseudo and value == ctx.patient_id else _DROP
            return _reference(value, ctx)
        return _generalize(value, to, ctx, self.profile.restricted_zip3)

    def _value(self, key: str, name: str, value: Any, ctx: _Ctx) -> Any:
        if isinstance(value, dict):
            if "resourceType" in value:  # contained, Bundle.entry.resource, Parameters...: its own type's rules
                out = self._resource(value, ctx)
            else:
                out = self._object(value, key, ctx)
                if name in _EXTENSIONS and set(out) <= {"url", "id"}:
                    return _DROP  # an extension whose value went is no extension
            return out if out else _DROP
        if isinstance(value, list):
            items = [v for v in (self._value(key, name, x, ctx) for x in value) if v is not _DROP]
            return items if items else _DROP
        return self._leaf(key, value, ctx)

    def _object(self, node: dict[str, Any], prefix: str, ctx: _Ctx) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in node.items():
            if name == "resourceType" and prefix.find(".") < 0:
                out[name] = value
                continue
            v = self._value(f"{prefix}.{name}", name, value, ctx)
            if v is not _DROP:
                out[name] = v
        if ctx.capped_age and "value" in out:
            out["comparator"] = ">="
            ctx.capped_age = False
        return out


@lru_cache(maxsize=4)
def deidentifier(level: str) -> Deidentifier:
    """The de-identifier of a level named in the rules file (``pseudonymize``, ``safe_harbor``)."""
    return Deidentifier(_profiles()[level])


def pseudonymize(resource: dict[str, Any], patient_id: str | None, pseudo: str | None) -> dict[str, Any]:
    return deidentifier("pseudonymize").apply(resource, patient_id, pseudo)


def safe_harbor(resource: dict[str, Any], patient_id: str | None, pseudo: str | None,
                today: date | None = None) -> dict[str, Any]:
    return deidentifier("safe_harbor").apply(resource, patient_id, pseudo, today)


DEIDENTIFIERS = {"pseudonymize": pseudonymize, "safe_harbor": safe_harbor}


def patient_refs(node: Any) -> set[str]:
    """The logical ids of every patient the resource references (``Patient/x``, ``urn:uuid:x``)."""
    found: set[str] = set()

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            ref = n.get("reference")
            if isinstance(ref, str):
                if ref.startswith("Patient/"):
                    found.add(ref.split("/", 1)[1])
                elif ref.startswith("urn:uuid:"):
                    found.add(ref[len("urn:uuid:"):])
            for value in n.values():
                walk(value)
        elif isinstance(n, list):
            for value in n:
                walk(value)

    walk(node)
    return found
