"""Sensitivity labels assigned at ingest (docs/architecture.md §4), from value sets that span code systems.

A resource's labels are the union of the confidentiality codes a hospital put in
``meta.security`` and the labels of every Coding anywhere in the resource
(``code``, ``reasonCode``, ``medicationCodeableConcept``, a Claim's diagnosis, an
Observation's value, a contained resource's codes...), whatever the resource
type: the same diagnosis is sensitive whether it arrives as a Condition coded in
SNOMED CT, a Claim coded in ICD-10-CM or a prescription for an antiretroviral.

The table is data (``labels.json`` or ``HEALTHGOV_LABELS_FILE``) a data-protection
officer can extend: per label, per code-system family (SNOMED CT; ICD-10 in its
WHO, US clinical and Chinese national editions; LOINC; RxNorm; ATC), the codes,
with ICD-10 and ATC matched hierarchically (a category covers its subcodes;
ranges like ``B20-B24``; ``!code`` exceptions). Everything is precomputed into
dictionaries when the table loads, so labelling a resource is one walk of it and
a few dictionary look-ups per Coding.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from services.contracts.vocabulary import SENSITIVE_LABELS

SENSITIVE = frozenset(SENSITIVE_LABELS)
DEFAULT_TABLE = Path(__file__).with_name("labels.json")
_RANGE = re.compile(r"^([A-Z0-9]*?)(\d+)-\1(\d+)$")
_NO_LABELS: frozenset[str] = frozenset()


def _normal(code: str) -> str:
    """ICD-10 and ATC codes compared without dots, spaces or case (``b20.1`` is ``B201``)."""
    return code.replace(".", "").replace(" ", "").upper()


def _expand(entry: str) -> list[str]:
    """``B20-B24`` -> B20, B21, B22, B23, B24; ``Z71.4-Z71.5`` -> Z714, Z715; anything else as it is."""
    norm = _normal(entry)
    m = _RANGE.match(norm)
    if not m:
        if "-" in norm:
            raise ValueError(f"label range not understood: {entry!r} (ranges vary only in their last digits)")
        return [norm]
    prefix, lo, hi = m.groups()
    if len(lo) != len(hi) or int(lo) > int(hi):
        raise ValueError(f"label range not understood: {entry!r}")
    return [f"{prefix}{n:0{len(lo)}d}" for n in range(int(lo), int(hi) + 1)]


class LabelTable:
    """Code -> labels, exact for SNOMED CT, LOINC, RxNorm; by leading characters for ICD-10 and ATC."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.exact: dict[tuple[str, str], frozenset[str]] = {}
        # system URI -> normalised code prefix -> (labels it adds, labels it takes away)
        self.hierarchy: dict[str, dict[str, tuple[frozenset[str], frozenset[str]]]] = {}
        self.depth: dict[str, int] = {}
        families = doc.get("code_systems", {})
        for label, per_family in doc.get("value_sets", {}).items():
            if label not in SENSITIVE:
                raise ValueError(f"unknown sensitivity label {label!r}; known: {sorted(SENSITIVE)}")
            for family, codes in per_family.items():
                if family not in families:
                    raise ValueError(f"value set {label} names an unknown code system family {family!r}")
                spec = families[family]
                for uri in spec["uris"]:
                    if spec.get("match") == "hierarchy":
                        self._add_hierarchy(uri, label, codes)
                    else:
                        for code in codes:
                            self.exact[(uri, code)] = self.exact.get((uri, code), _NO_LABELS) | {label}

    def _add_hierarchy(self, uri: str, label: str, codes: list[str]) -> None:
        table = self.hierarchy.setdefault(uri, {})
        for entry in codes:
            remove = entry.startswith("!")
            for prefix in _expand(entry[1:] if remove else entry):
                add, sub = table.get(prefix, (_NO_LABELS, _NO_LABELS))
                table[prefix] = (add, sub | {label}) if remove else (add | {label}, sub)
                self.depth[uri] = max(self.depth.get(uri, 0), len(prefix))

    def lookup(self, system: str | None, code: str | None) -> frozenset[str]:
        """The labels one coding carries."""
        if not system or not code:
            return _NO_LABELS
        hit = self.exact.get((system, code))
        if hit is not None:
            return hit
        table = self.hierarchy.get(system)
        if table is None:
            return _NO_LABELS
        norm = _normal(code)
        added: set[str] = set()
        removed: set[str] = set()
        for n in range(1, min(len(norm), self.depth[system]) + 1):
            found = table.get(norm[:n])
            if found is not None:
                added |= found[0]
                removed |= found[1]
        return frozenset(added - removed)

    def _code(self, node: dict[str, Any], found: set[str]) -> None:
        """The labels of one object's ``system`` and ``code`` (a Coding, or what holds a code) into ``found``."""
        code = node.get("code")
        if code.__class__ is str:
            system = node.get("system")
            hit = self.exact.get((system, code))
            if hit is not None:
                found.update(hit)
            elif system in self.hierarchy:
                found.update(self.lookup(system, code))

    def labels_of(self, resource: dict[str, Any], coded: list[dict[str, Any]]) -> list[str]:
        """``labels_for`` from the objects holding a code that validation's walk found (``Verdict.coded``).

        The same labels without a walk of its own: the structure check already
        visits every element, and NDJSON lines are labelled right after it.
        """
        found = _declared(resource)
        for node in coded:
            self._code(node, found)
        return sorted(found) if found else []

    def labels_for(self, resource: dict[str, Any]) -> list[str]:
        """Labels of one resource (every resource of every submission passes here: one walk, dict look-ups)."""
        found = _declared(resource)
        code_labels = self._code
        # An explicit stack, not recursion: nesting depth is the sender's choice.
        stack = [v for k, v in resource.items() if k != "meta" and v.__class__ in (dict, list)]
        pop, push = stack.pop, stack.append
        while stack:
            node = pop()
            if node.__class__ is list:
                for item in node:
                    if item.__class__ is dict:
                        push(item)
                continue
            code_labels(node, found)
            for value in node.values():
                if value.__class__ is dict or value.__class__ is list:
                    push(value)
        return sorted(found) if found else []


@lru_cache(maxsize=4)
def load_table(path: Path = DEFAULT_TABLE) -> LabelTable:
    return LabelTable(json.loads(path.read_text()))


def _declared(resource: dict[str, Any]) -> set[str]:
    """The sensitivity labels the sender declared in ``meta.security`` (kept; the platform only ever adds)."""
    found: set[str] = set()
    meta = resource.get("meta")
    if isinstance(meta, dict):
        for sec in meta.get("security") or ():
            if isinstance(sec, dict) and sec.get("code") in SENSITIVE:
                found.add(sec["code"])
    return found
