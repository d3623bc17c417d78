"""Statistical disclosure control: what of an aggregate answer may leave (docs/architecture.md §16).

Every analytic answer is a table of cells (a group, such as a district and a
month, and the set of people counted in it) plus the total. Before anything
leaves records it passes ``Control.protect``:

1. **Primary suppression**: a cell counting at most ``threshold`` people (7 by
   default, as OpenSAFELY does) is withheld.
2. **Overlap (differencing) control**: a cell whose set of people differs from
   a cell already released (to anyone) by 1..``threshold`` people is withheld:
   otherwise two overlapping queries ("district D" and "district D without
   code X") subtract to a small count that was never released directly. The
   ledger of released sets lives in records' database, inside its trust
   boundary, shared by its processes and kept across restarts (``ledger.py``).
3. **Secondary (complementary) suppression**: within every slice of the table
   along each grouping dimension (whose marginal a caller may know or ask for),
   if exactly one cell is withheld, or the withheld cells together count at
   most ``threshold``, the next smallest cell is withheld too, until the
   withheld cells cannot be recovered by subtraction. A slice that cannot be
   protected so withholds its total as well.
4. **Rounding**: what is released is rounded to the nearest ``rounding`` (5).

Why sets and not counts: differencing is about *who* changed between two
answers, which counts cannot tell apart (40 vs 37 may be three people leaving
or ten leaving and seven arriving). The sets are keyed pseudonyms (64-bit),
never identifiers, and never leave records.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, ...]
Members = frozenset[int]

PRIMARY = "small_count"
OVERLAP = "overlaps_released_answer"
SECONDARY = "protects_suppressed_cell"


@dataclass(frozen=True)
class Settings:
    threshold: int = 7
    rounding: int = 5


@dataclass
class ReleasedCell:
    key: Key
    count: int | None  # rounded; None when withheld
    suppressed: str | None = None  # why it was withheld


@dataclass
class Released:
    """The protected answer: cells by group (dimension names in ``by``) and the total."""

    by: list[str]
    cells: list[ReleasedCell]
    total: ReleasedCell

    def as_json(self) -> dict[str, Any]:
        """The body a caller reads; raw counts and member sets are not in it."""
        return {
            "by": self.by,
            "total": {"count": self.total.count, "suppressed": self.total.suppressed},
            "rows": [{**dict(zip(self.by, c.key, strict=True)), "count": c.count, "suppressed": c.suppressed}
                     for c in self.cells],
        }


def round_to(n: int, base: int) -> int:
    """Round half up to a multiple of ``base`` (8 → 10, 12 → 10, 13 → 15)."""
    return base * ((n + base // 2) // base) if base > 1 else n


FRONT = 16  # members of each set the in-memory index keeps: it serves thresholds up to FRONT - 1


class Ledger:
    """Every set of people released so far, to find answers that differ by a few people.

    Two sets that differ in at most ``t`` people share someone among the first
    ``t + 1`` of each (in the pseudonyms' order: the first shared person has at
    most ``t`` people of either set before it, all outside the other set;
    ``ledger.py`` uses the same fact in the database). So each set is indexed by
    its first ``FRONT`` people, and a new cell is compared only with the sets
    sharing one of its own first ``t + 1`` that are also of nearby size: few,
    however many sets were released. (That needs the new set to have more than
    ``t`` people, or two disjoint sets could be within ``t``; a smaller one, which
    disclosure control withholds anyway, is compared with every set of nearby size.)
    """

    def __init__(self) -> None:
        self._by_front: dict[int, list[Members]] = defaultdict(list)
        self._by_size: dict[int, list[Members]] = defaultdict(list)
        self._known: set[Members] = set()
        self._lock = threading.Lock()

    def near(self, members: Members, threshold: int) -> bool:
        """True if a released set differs from ``members`` by 1..threshold people."""
        n = len(members)
        with self._lock:
            if n > threshold and threshold < FRONT:  # a set of t or fewer may differ from one it shares no one with
                candidates: Iterable[Members] = {id(o): o for m in sorted(members)[:threshold + 1]
                                                 for o in self._by_front.get(m, ())}.values()
            else:  # beyond the index: every set of nearby size
                candidates = [o for size in range(max(0, n - threshold), n + threshold + 1)
                              for o in self._by_size.get(size, ())]
            return any(other is not members and abs(len(other) - n) <= threshold
                       and 0 < len(other ^ members) <= threshold for other in candidates)

    def add(self, sets: Iterable[Members]) -> None:
        with self._lock:
            for s in sets:
                if s not in self._known:
                    self._known.add(s)
                    self._by_size[len(s)].append(s)
                    for m in sorted(s)[:FRONT]:
                        self._by_front[m].append(s)

    def __len__(self) -> int:
        return len(self._known)


@dataclass
class Control:
    settings: Settings = field(default_factory=Settings)
    ledger: Ledger = field(default_factory=Ledger)

    def protect(self, by: list[str], cells: dict[Key, Members], total: Members,
                ledger: Ledger | None = None) -> Released:
        """The releasable form of one answer; records the released sets in ``ledger`` (default: this control's).

        Records passes the sets of nearby size from its shared ledger (``ledger.py``), under its lock.
        """
        ledger = self.ledger if ledger is None else ledger
        t = self.settings.threshold
        why: dict[Key, str] = {}
        for key, members in cells.items():
            if len(members) <= t:
                why[key] = PRIMARY
            elif ledger.near(members, t):
                why[key] = OVERLAP
        total_why: str | None = PRIMARY if len(total) <= t else (OVERLAP if ledger.near(total, t) else None)
        slice_unprotected = self._secondary(by, cells, why)
        if slice_unprotected and total_why is None and not by[1:]:
            total_why = SECONDARY  # a 1-D table whose withheld cells cannot be hidden: the total goes too
        released = [ReleasedCell(k, None, why[k]) if k in why else
                    ReleasedCell(k, round_to(len(m), self.settings.rounding)) for k, m in sorted(cells.items())]
        out_total = ReleasedCell((), None, total_why) if total_why else \
            ReleasedCell((), round_to(len(total), self.settings.rounding))
        ledger.add([m for k, m in cells.items() if k not in why] + ([] if total_why else [total]))
        return Released(by=by, cells=released, total=out_total)

    def _secondary(self, by: list[str], cells: dict[Key, Members], why: dict[Key, str]) -> bool:
        """Withhold complementary cells until no slice gives a withheld cell away; True if a slice could not be."""
        t = self.settings.threshold
        unprotected = False
        changed = True
        while changed:
            changed = False
            for dim in range(len(by)):
                slices: dict[Key, list[Key]] = defaultdict(list)
                for key in cells:
                    slices[key[:dim] + key[dim + 1:]].append(key)
                for keys in slices.values():
                    hidden = [k for k in keys if k in why]
                    if not hidden:
                        continue
                    hidden_sum = sum(len(cells[k]) for k in hidden)
                    while len(hidden) == 1 or hidden_sum <= t:
                        shown = sorted((k for k in keys if k not in why), key=lambda k: (len(cells[k]), k))
                        if not shown:
                            unprotected = True
                            break
                        why[shown[0]] = SECONDARY
                        hidden.append(shown[0])
                        hidden_sum += len(cells[shown[0]])
                        changed = True
        return unprotected
