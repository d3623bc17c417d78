"""Care relationships from evidence the platform can account for (docs/architecture.md §10).

A hospital is in a care relationship with a patient only while one of these
holds, each with an expiry:

- **an encounter**: an Encounter or EpisodeOfCare the hospital itself sent for
  the patient that is under way, or ended less than ``window`` ago (the
  relationship lasts until ``window`` after its end, or after the moment it
  was seen to be under way, and each newer encounter extends it);
- **a referral** by a hospital already in care (``referrals.py``);
- **the patient's own grant** in the portal (``referrals.py``, by the patient).

Sending any other record (an Observation, a Condition) grants nothing: a
write never grants a read. A cancelled or mistaken encounter is no evidence,
and neither is one planned for later.

Pure functions, no I/O, apart from ``extend`` which writes one link row in the
caller's session.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from services.records.store import CareLink

EVIDENCE_TYPES = frozenset({"Encounter", "EpisodeOfCare"})
NOT_EVIDENCE = frozenset({"planned", "cancelled", "entered-in-error", "waitlist", "unknown"})


def instant(value: Any) -> datetime | None:
    """A FHIR dateTime as an aware datetime; a bare date is its first instant (UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def evidence_until(resource: dict[str, Any], now: datetime, window: timedelta) -> datetime | None:
    """Until when this resource is evidence of care, or None if it is none (any longer).

    An encounter under way (no ``period.end``, not finished) is evidence for
    ``window`` from now; a finished one until ``window`` after its end; one
    that has not started yet is none.
    """
    if resource.get("resourceType") not in EVIDENCE_TYPES or resource.get("status") in NOT_EVIDENCE:
        return None
    period = resource.get("period") if isinstance(resource.get("period"), dict) else {}
    start = instant(period.get("start"))
    if start is not None and start > now + timedelta(minutes=5):
        return None
    end = instant(period.get("end"))
    if end is None:
        if resource.get("status") == "finished":
            return None  # finished, and nobody said when: nothing to measure the window from
        until = now + window
    else:
        until = min(end, now) + window
    return until if until > now else None


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def extend(session: Session, patient: str, hospital: str, *, source: str, until: datetime,
           referred_by: str | None = None) -> bool:
    """Give ``hospital`` care of ``patient`` until ``until`` (never shortening it); True if it is new to them.

    "New" means the hospital never had a relationship with the patient
    before: that is the first access a patient is told about. A lapsed link
    that is renewed is not new.
    """
    link = session.exec(select(CareLink).where(CareLink.patient == patient, CareLink.hospital == hospital)).first()
    if link is None:
        session.add(CareLink(patient=patient, hospital=hospital, source=source, referred_by=referred_by,
                             expires_at=until))
        session.flush()
        return True
    current = _aware(link.expires_at)
    if current is None or until > current:
        link.expires_at = until
        link.source, link.referred_by = source, referred_by
        session.add(link)
    return False
