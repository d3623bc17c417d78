"""Sensitivity labels assigned at ingest (DESIGN §4).

A resource's labels are the union of the confidentiality codes a hospital put in
``meta.security`` and the labels our code table gives to any coding found in
the resource's clinical code elements. The table is data (``labels.json`` or
``HEALTHGOV_LABELS_FILE``), so a data-protection officer can extend it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

SENSITIVE = frozenset({"HIV", "PSY", "ETH", "SDV", "SEX", "STD", "GDIS", "NOTIFIABLE"})
# Elements whose codings describe the clinical content (not e.g. the encounter class).
CODED_ELEMENTS = ("code", "reasonCode", "type", "vaccineCode", "medicationCodeableConcept",
                  "category", "valueCodeableConcept")
DEFAULT_TABLE = Path(__file__).with_name("labels.json")


class LabelTable:
    """Code → label look-up with exact codes and ICD-10 style prefixes."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.codes: dict[tuple[str, str], list[str]] = {}
        self.prefixes: dict[str, list[tuple[str, list[str]]]] = {}
        for system, spec in doc.get("systems", {}).items():
            for code, labels in spec.get("codes", {}).items():
                self.codes[(system, code)] = labels
            if spec.get("prefixes"):
                self.prefixes[system] = sorted(spec["prefixes"].items(), key=lambda kv: -len(kv[0]))

    def lookup(self, system: str | None, code: str | None) -> list[str]:
        if not system or not code:
            return []
        if (system, code) in self.codes:
            return self.codes[(system, code)]
        for prefix, labels in self.prefixes.get(system, ()):
            if code.startswith(prefix):
                return labels
        return []

    def labels_for(self, resource: dict[str, Any]) -> list[str]:
        """Labels of one resource (every resource of every submission passes here: kept to plain loops)."""
        found: set[str] = set()
        meta = resource.get("meta")
        for sec in (meta.get("security", []) if isinstance(meta, dict) else []) or []:
            if sec.get("code") in SENSITIVE:
                found.add(sec["code"])
        codes, lookup = self.codes, self.lookup
        for element in CODED_ELEMENTS:
            value = resource.get(element)
            if value is None:
                continue
            for concept in value if isinstance(value, list) else (value,):
                if not isinstance(concept, dict):
                    continue
                for coding in concept.get("coding", []) or []:
                    system, code = coding.get("system"), coding.get("code")
                    if not system or not code:
                        continue
                    hit = codes.get((system, code))
                    if hit is not None:
                        found.update(hit)
                    elif system in self.prefixes:
                        found.update(lookup(system, code))
        return sorted(found) if found else []


@lru_cache(maxsize=4)
def load_table(path: Path = DEFAULT_TABLE) -> LabelTable:
    return LabelTable(json.loads(path.read_text()))
