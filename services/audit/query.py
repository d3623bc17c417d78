"""Queries over the audit trail: filters, cursor pages, counts for dashboards.

Who may ask is OPA's decision (``audit_read``), taken in the route; this module
only runs the query it is given. What a patient may see is narrower than what
a regulator sees in one way the policy leaves to the platform: an event whose
decision carries ``obligations.notify_after`` (a sealed warrant) stays hidden
from the patient until that instant. That is applying an obligation, like
redacting a label, so it happens here, as a query condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, func, or_, select
from sqlalchemy.engine import Engine

from services.audit.store import Entry
from services.contracts import errors

ENTRY = Entry.__table__  # type: ignore[attr-defined]
MAX_PAGE = 1000


class BadQuery(errors.Invalid):
    """A filter value that cannot be understood (answered with 400)."""


def norm_time(value: Any, *, default: str | None = None) -> str:
    """An RFC 3339 timestamp as fixed-width UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    Stored and compared as strings, so every time in the audit tables has this
    one shape. Unreadable input gives ``default``, or raises ``BadQuery``.
    """
    try:
        moment = datetime.fromisoformat(str(value).replace("z", "Z"))
    except (TypeError, ValueError):
        if default is None:
            raise BadQuery(f"not an RFC 3339 timestamp: {value!r}") from None
        return default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class EventFilter:
    """What a caller asked for, after the route resolved who may see what."""

    patient: str | None = None  # pseudonym
    accessor: str | None = None  # accessor id
    accessor_org: str | None = None
    org_type: str | None = None
    purpose: str | None = None
    kind: str | None = None
    outcome: str | None = None
    since: str | None = None  # normalised, inclusive
    until: str | None = None  # normalised, exclusive
    visible_at: str | None = None  # set for patients: hide events sealed until after this instant

    def conditions(self) -> list[Any]:
        conds: list[Any] = []
        for column, value in ((ENTRY.c.patient, self.patient), (ENTRY.c.accessor_id, self.accessor),
                              (ENTRY.c.accessor_org, self.accessor_org),
                              (ENTRY.c.accessor_org_type, self.org_type), (ENTRY.c.purpose, self.purpose),
                              (ENTRY.c.kind, self.kind), (ENTRY.c.outcome, self.outcome)):
            if value is not None:
                conds.append(column == value)
        if self.since is not None:
            conds.append(ENTRY.c.occurred_at >= self.since)
        if self.until is not None:
            conds.append(ENTRY.c.occurred_at < self.until)
        if self.visible_at is not None:
            conds.append(or_(ENTRY.c.notify_after.is_(None), ENTRY.c.notify_after <= self.visible_at))
        return conds


@dataclass(frozen=True)
class Page:
    rows: list[Row[Any]]
    next_cursor: int | None


def search(engine: Engine, flt: EventFilter, *, cursor: int = 0, limit: int = 100) -> Page:
    """Events matching ``flt`` with index >= ``cursor``, in log order, at most ``limit``."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadQuery(f"limit must be 1..{MAX_PAGE}")
    q = select(ENTRY).where(ENTRY.c.idx >= cursor, *flt.conditions()).order_by(ENTRY.c.idx).limit(limit + 1)
    with engine.connect() as conn:
        rows = list(conn.execute(q).all())
    more = len(rows) > limit
    return Page(rows=rows[:limit], next_cursor=int(rows[limit].idx) if more else None)


def find(engine: Engine, flt: EventFilter, event_id: str) -> Row[Any] | None:
    """One event by id, only if ``flt`` lets the caller see it."""
    q = select(ENTRY).where(ENTRY.c.event_id == event_id, *flt.conditions())
    with engine.connect() as conn:
        return conn.execute(q).first()


_GROUPS = {"by_kind": ENTRY.c.kind, "by_outcome": ENTRY.c.outcome, "by_org_type": ENTRY.c.accessor_org_type,
           "by_purpose": ENTRY.c.purpose, "by_day": func.substr(ENTRY.c.occurred_at, 1, 10)}


def stats(engine: Engine, flt: EventFilter) -> dict[str, Any]:
    """Counts for dashboards: in total and grouped by kind, outcome, org type, purpose and day."""
    conds = flt.conditions()
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        out["events"] = int(conn.execute(select(func.count()).select_from(ENTRY).where(*conds)).scalar() or 0)
        for name, column in _GROUPS.items():
            label = column.label("key")
            rows = conn.execute(select(label, func.count()).where(*conds).group_by(label).order_by(label)).all()
            out[name] = {"none" if key is None else str(key): int(n) for key, n in rows}
    return out


# --- one patient's trail, as the patient reads it ------------------------------------------------------------

# (accessor_org_type, kind, purpose): the patient reading their own records. A guardian reading a child's records
# through the portal has the same organisation type but the purpose PWATRNY: a row of the child's trail.
OWN_VIEW = ("patient", "disclosure", "PATRQT")


@dataclass(frozen=True)
class TrailPage:
    """One page of a patient's trail, newest first, with the totals a pager needs.

    The patient's own reads through the portal are not rows: they are counted
    in ``own_views`` (and the newest of them dated), so each page load does not
    push what others did off the page.
    """

    rows: list[Row[Any]]
    total: int
    own_views: int
    own_last: str | None


def patient_trail(engine: Engine, flt: EventFilter, *, page: int = 1, per_page: int = 20,
                  kinds: tuple[str, ...] = (), org_types: tuple[str, ...] = ()) -> TrailPage:
    """Events of ``flt.patient`` (required) matching ``flt``, newest first, page ``page`` of ``per_page``.

    ``kinds`` and ``org_types`` narrow to any of several values (the portal's
    "kind of access" groups). Rows come by ``(patient, idx)`` descending, the
    index ``ix_audit_entry_patient_idx`` read backwards; totals are counts over
    the same index, so a deep page costs its offset, never the whole log.
    """
    if flt.patient is None:
        raise BadQuery("a trail is one patient's")
    if not 1 <= per_page <= MAX_PAGE or page < 1:
        raise BadQuery(f"per_page must be 1..{MAX_PAGE} and page >= 1")
    conds = flt.conditions()
    if kinds:
        conds.append(ENTRY.c.kind.in_(kinds))
    if org_types:
        conds.append(ENTRY.c.accessor_org_type.in_(org_types))
    own = (ENTRY.c.accessor_org_type == OWN_VIEW[0]) & (ENTRY.c.kind == OWN_VIEW[1]) & (ENTRY.c.purpose == OWN_VIEW[2])
    others = [*conds, ~own]
    q = (select(ENTRY).where(*others).order_by(ENTRY.c.idx.desc())
         .offset((page - 1) * per_page).limit(per_page))
    with engine.connect() as conn:
        rows = list(conn.execute(q).all())
        total = int(conn.execute(select(func.count()).select_from(ENTRY).where(*others)).scalar() or 0)
        n_own, last = conn.execute(select(func.count(), func.max(ENTRY.c.occurred_at)).where(*conds, own)).one()
    return TrailPage(rows=rows, total=total, own_views=int(n_own or 0), own_last=last)
