"""A patient's "who may use my data" choices: the grant form in, FHIR Consent out, and back to plain words.

The portal only translates. Records validates every Consent again and OPA
decides what a consent means (docs/architecture.md §5), so nothing here is a rule about
access; it is what a patient can sensibly ask for from a form, said in words a
patient reads. The patient a Consent belongs to always comes from the session,
never from the form. Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.contracts import vocabulary
from services.portal.i18n import N_

THIRD_PARTY_TYPES = vocabulary.THIRD_PARTY_ORG_TYPES
ORG_TYPE_WORDS = vocabulary.ORG_TYPES
# The purposes a third party can be given (HL7 v3 PurposeOfUse); the rest belong to care and the state.
PURPOSES = {code: vocabulary.PURPOSES[code] for code in ("HRESCH", "HPAYMT", "HMARKT")}
OTHER_PURPOSES = {"*": vocabulary.ANY_PURPOSE,
                  **{code: words for code, words in vocabulary.PURPOSES.items() if code not in PURPOSES}}
RECORD_TYPES = {
    "Patient": N_("my personal details (name, birth date, address)"),
    "Condition": N_("diagnoses and health problems"),
    "Observation": N_("test results and measurements"),
    "DiagnosticReport": N_("lab and imaging reports"),
    "Encounter": N_("visits and hospital stays"),
    "MedicationRequest": N_("prescriptions"),
    "Procedure": N_("operations and procedures"),
    "Immunization": N_("vaccinations"),
    "AllergyIntolerance": N_("allergies"),
    "DocumentReference": N_("letters and documents"),
}
# A permission without an end does not count (the policy needs an expiry), so the form gives it one.
DEFAULT_PERMIT_DAYS = 365
ERASE_PHRASE = "delete my records"
RESOURCE_TYPES_SYSTEM = "http://hl7.org/fhir/resource-types"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


class FormError(ValueError):
    """The form cannot become a consent; the message says what to fix, in words."""


@dataclass(frozen=True)
class Grant:
    """What the patient asked for: allow or refuse one organisation one purpose."""

    grantee: str
    purpose: str
    decision: str  # "permit" | "deny"
    types: tuple[str, ...] = ()
    end: date | None = None

    def to_fhir(self, patient_id: str) -> dict[str, Any]:
        """The FHIR Consent records expects; ``patient_id`` is the signed-in patient's, never the form's."""
        provision: dict[str, Any] = {
            "type": self.decision,
            "actor": [{"reference": {"reference": f"Organization/{self.grantee}"}}],
            "purpose": [{"system": PURPOSE_SYSTEM, "code": self.purpose}],
        }
        if self.types:
            provision["class"] = [{"system": RESOURCE_TYPES_SYSTEM, "code": t} for t in self.types]
        if self.end is not None:
            provision["period"] = {"end": self.end.isoformat()}
        return {"resourceType": "Consent", "status": "active",
                "patient": {"reference": f"Patient/{patient_id}"}, "provision": provision}


def third_parties(registry: dict[str, Any]) -> list[dict[str, str]]:
    """The organisations a patient may allow or refuse, by name, for the form's list."""
    orgs = registry.get("orgs", {})
    return sorted(({"id": oid, "name": o.get("name", oid), "type": ORG_TYPE_WORDS.get(o.get("type"), "")}
                   for oid, o in orgs.items()
                   if o.get("type") in THIRD_PARTY_TYPES and not o.get("suspended")),
                  key=lambda o: (o["type"], o["name"]))


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0].strip()


def parse_grant(form: dict[str, list[str]], registry: dict[str, Any], today: date) -> Grant:
    """Check the grant form and return what it asks for; ``FormError`` says what to fix.

    A refusal covers every kind of record (an opt-out is about the purpose,
    not the record type), so record kinds are asked only for a permission.
    """
    grantee = _one(form, "grantee")
    if not grantee:
        raise FormError(N_("Choose the organisation this is about."))
    if grantee not in {o["id"] for o in third_parties(registry)}:
        raise FormError(N_("That organisation is not one you can allow or refuse here; choose one from the list."))
    purpose = _one(form, "purpose")
    if purpose not in PURPOSES:
        raise FormError(N_("Choose what the organisation may use your records for."))
    decision = _one(form, "decision")
    if decision not in ("permit", "deny"):
        raise FormError(N_("Choose whether you allow or refuse it."))
    types = tuple(dict.fromkeys(t.strip() for t in form.get("types", []) if t.strip()))
    if decision == "permit":
        if not types:
            raise FormError(N_("Tick at least one kind of record the organisation may see."))
        unknown = [t for t in types if t not in RECORD_TYPES]
        if unknown:
            raise FormError(N_("Only the kinds of record in the list can be chosen."))
    else:
        types = ()
    end = _end_date(_one(form, "end"), today)
    if end is None and decision == "permit":
        end = today + timedelta(days=DEFAULT_PERMIT_DAYS)
    return Grant(grantee=grantee, purpose=purpose, decision=decision, types=types, end=end)


def _end_date(raw: str, today: date) -> date | None:
    if not raw:
        return None
    try:
        end = date.fromisoformat(raw)
    except ValueError:
        raise FormError(N_("The end date is not a date; use the form year-month-day, e.g. 2027-01-31.")) from None
    if end <= today:
        raise FormError(N_("The end date must be after today."))
    return end


@dataclass
class ConsentRow:
    """One consent as the patient page shows it: codes and ids, which the page puts in the reader's words."""

    id: str
    grantees: list[dict[str, str]]  # {"id", "type"}; id "" is everyone
    allowed: bool
    purposes: list[str]  # PurposeOfUse codes; "*" is any purpose
    types: list[str]  # FHIR resource types; empty is every record
    since: str
    until: str
    state: str  # "active" | "expired" | "revoked" | "proposed" | other FHIR status, as is
    changeable: bool = False
    confirmable: bool = False  # recorded by a hospital on the patient's behalf, waiting for the patient
    overridden: bool = False  # a permission a refusal in force for the same organisation and purpose outweighs


def consent_rows(bundle: dict[str, Any], registry: dict[str, Any], now: datetime | None = None) -> list[ConsentRow]:
    """The patient's consents (newest first): who, allowed or refused, for what, until when, and what is in force.

    Where a refusal in force and a permission in force name the same
    organisation and purpose, the platform's policy applies the refusal; the
    permission is marked ``overridden`` so the page can say so.
    """
    orgs = registry.get("orgs", {})
    now = now or datetime.now(UTC)
    rows = []
    for entry in bundle.get("entry", []):
        c = entry.get("resource") or {}
        if c.get("resourceType") != "Consent" or not c.get("id"):
            continue
        provision = c.get("provision") or {}
        refs = [((a.get("reference") or {}).get("reference") or "") for a in provision.get("actor") or []]
        ids = [r.split("/", 1)[1] for r in refs if r.startswith("Organization/")]
        grantees = [{"id": i, "type": str(orgs.get(i, {}).get("type") or "")} for i in ids]
        purposes = [str(p.get("code")) for p in provision.get("purpose") or [] if p.get("code")]
        types = [str(k.get("code")) for k in provision.get("class") or [] if k.get("code")]
        end = (provision.get("period") or {}).get("end") or ""
        state = _state(c.get("status"), end, now)
        rows.append(ConsentRow(
            id=c["id"], grantees=grantees or [{"id": "", "type": ""}],
            allowed=provision.get("type") == "permit", purposes=purposes or ["*"], types=types,
            since=(c.get("dateTime") or "")[:10], until=end[:10], state=state,
            changeable=c.get("status") in ("active", "proposed"), confirmable=c.get("status") == "proposed"))
    refusals = [r for r in rows if r.state == "active" and not r.allowed]
    for r in rows:
        if r.state == "active" and r.allowed:
            r.overridden = any(_overlap(r.grantees, d.grantees, "id", "") and _overlap_codes(r.purposes, d.purposes)
                               for d in refusals)
    return sorted(rows, key=lambda r: r.since, reverse=True)


def _overlap(a: list[dict[str, str]], b: list[dict[str, str]], key: str, everyone: str) -> bool:
    ids_a, ids_b = {x[key] for x in a}, {x[key] for x in b}
    return everyone in ids_b or bool(ids_a & ids_b)


def _overlap_codes(permitted: list[str], refused: list[str]) -> bool:
    return "*" in refused or bool(set(permitted) & set(refused))


def _state(status: Any, end: str, now: datetime) -> str:
    if status == "inactive":
        return "revoked"
    if status == "active" and end and _ended(end, now):
        return "expired"
    return str(status or "active")


def _ended(end: str, now: datetime) -> bool:
    """Whether ``end`` (a FHIR date or dateTime) has passed; a bare date ends as that day begins (UTC)."""
    try:
        if len(end) <= 10:
            parts = [int(x) for x in end.split("-")] + [1, 1]
            moment = datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(end.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    except ValueError:
        return False
    return moment <= now


def confirmable_ids(rows: list[ConsentRow]) -> set[str]:
    """Ids of permits a hospital recorded for the patient that wait for the patient's confirmation."""
    return {r.id for r in rows if r.confirmable}


def hospitals(registry: dict[str, Any]) -> list[dict[str, str]]:
    """The hospitals a patient may let treat them (the patient's own grant of care), by name."""
    return sorted(({"id": oid, "name": o.get("name", oid)} for oid, o in registry.get("orgs", {}).items()
                   if o.get("type") == "hospital" and not o.get("suspended")), key=lambda o: o["name"])


NOTICE_WORDS = {
    "first_access": N_("began treating you and can now read your records"),
    "break_glass": N_("opened your records in an emergency (break-glass); the access is reviewed"),
    "state_access": N_("a public body read your records under the law"),
    "on_behalf": N_("acted on your behalf (a permission or a referral)"),
    "research_use": N_("included your records, de-identified, in an approved research project"),
}


def notice_rows(notices: list[dict[str, Any]], registry: dict[str, Any]) -> list[dict[str, str]]:
    """The patient's notices: when, which organisation, what kind of thing happened, and the event that proves it."""
    del registry  # names are put in the reader's language by the page
    return [{"at": str(n.get("at") or ""), "event_id": str(n.get("event_id") or ""), "org": str(n.get("org") or ""),
             "kind": str(n.get("kind") or ""), "about": str(n.get("about_org") or "")} for n in notices]


def revocable_ids(rows: list[ConsentRow]) -> set[str]:
    """Ids of the patient's own consents that can still be withdrawn."""
    return {r.id for r in rows if r.changeable}


def erase_confirmed(phrase: str) -> bool:
    """The patient typed the confirmation phrase (case and surrounding spaces do not matter)."""
    return " ".join(phrase.split()).casefold() == ERASE_PHRASE


def echo(form: dict[str, list[str]]) -> dict[str, Any]:
    """The grant form as sent, to fill it in again next to the message saying what to fix."""
    return {"grantee": _one(form, "grantee"), "purpose": _one(form, "purpose"), "decision": _one(form, "decision"),
            "types": [t.strip() for t in form.get("types", [])], "end": _one(form, "end")}
